-- Read model of the dispatch context (schema `dispatch`), written by the projection `dispatch`.
-- Documents are the domain states as JSON; the columns beside them are what queries filter on.

CREATE TABLE IF NOT EXISTS dispatch.facility (
    id   BOOLEAN PRIMARY KEY DEFAULT TRUE,
    doc  JSONB NOT NULL,
    seq  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS dispatch.carts (
    cart_id TEXT PRIMARY KEY,
    status  TEXT NOT NULL,
    doc     JSONB NOT NULL,
    seq     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS carts_status ON dispatch.carts (status);

CREATE TABLE IF NOT EXISTS dispatch.ssds (
    ssd_id  TEXT PRIMARY KEY,
    cart_id TEXT NOT NULL,
    doc     JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS ssds_cart ON dispatch.ssds (cart_id);

-- The lookup table: dataset -> SSD (-> cart through dispatch.ssds).
CREATE TABLE IF NOT EXISTS dispatch.ssd_datasets (
    dataset    TEXT NOT NULL,
    ssd_id     TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    PRIMARY KEY (dataset, ssd_id)
);
CREATE INDEX IF NOT EXISTS ssd_datasets_ssd ON dispatch.ssd_datasets (ssd_id);

CREATE TABLE IF NOT EXISTS dispatch.requests (
    request_id TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    doc        JSONB NOT NULL,
    seq        BIGINT NOT NULL
);
