-- The sharded DHT read model: one entry per key (the customer id), its value the cart as JSON.
-- `shard` = hash_key % shard count (SWITCHYARD_SHOP_SHARDS); `seq` = stream sequence of the last event.
CREATE TABLE IF NOT EXISTS shop.dht (
    key      TEXT PRIMARY KEY,
    hash_key BIGINT NOT NULL,
    shard    INTEGER NOT NULL,
    value    JSONB NOT NULL,
    seq      BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS dht_shard ON shop.dht (shard);

-- The shard count the `shard` column was computed with.
CREATE TABLE IF NOT EXISTS shop.dht_meta (
    id     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    shards INTEGER NOT NULL
);
