-- The sharded DHT read model, normalised so that an event writes one small row.
-- `shop.dht`: one row per key (the customer id) with its hash_key, its shard
-- (hash_key % SWITCHYARD_SHOP_SHARDS) and the stream sequence of its last event.
CREATE TABLE IF NOT EXISTS shop.dht (
    key      TEXT PRIMARY KEY,
    hash_key BIGINT NOT NULL,
    shard    INTEGER NOT NULL,
    seq      BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS dht_shard ON shop.dht (shard);

-- The value of a key: the cart's lines; `position` orders them (the sequence of the event that put
-- the line in the cart). Money in cents.
CREATE TABLE IF NOT EXISTS shop.dht_items (
    key             TEXT NOT NULL,
    item_id         TEXT NOT NULL,
    item_count      BIGINT NOT NULL,
    offered_cents   BIGINT NOT NULL,
    sale_cents      BIGINT,
    sale_expiration TIMESTAMPTZ,
    position        BIGINT NOT NULL,
    PRIMARY KEY (key, item_id)
);

-- The shard count the `shard` column was computed with.
CREATE TABLE IF NOT EXISTS shop.dht_meta (
    id     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    shards INTEGER NOT NULL
);
