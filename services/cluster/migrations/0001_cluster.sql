-- Read model of cluster managers: the folded manager state per manager (the tree is derived from it).
CREATE TABLE IF NOT EXISTS cluster.managers (
    manager_id TEXT PRIMARY KEY,
    state_code SMALLINT NOT NULL,
    state_name TEXT NOT NULL,
    -- Number of events folded (the tree's version).
    version    BIGINT NOT NULL,
    -- Stream sequence of the last event folded.
    seq        BIGINT NOT NULL,
    doc        JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- How far the live delta publisher has published (so a restart resumes without losing deltas).
CREATE TABLE IF NOT EXISTS cluster.live_checkpoint (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
