-- Checkpoint of every projection: the last stream sequence whose effect is committed.
CREATE TABLE IF NOT EXISTS runtime.checkpoints (
    projection TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Events a projection could not apply: parked with the reason, never retried for ever.
CREATE TABLE IF NOT EXISTS runtime.dead_letters (
    projection TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    subject    TEXT NOT NULL,
    payload    BYTEA NOT NULL,
    reason     TEXT NOT NULL,
    parked_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, seq)
);
