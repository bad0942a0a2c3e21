-- Chunk servers as their ServerJoined / ServerLost events leave them.
CREATE TABLE IF NOT EXISTS dfs.servers (
    server_id  TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    live       BOOLEAN NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL
);

-- Which server holds a good copy of which chunk (ChunkStored adds, ChunkLost / ChunkDeleted remove).
-- Rows of a lost server stay: they count again if it comes back (then reconciled).
CREATE TABLE IF NOT EXISTS dfs.replicas (
    chunk_id    TEXT NOT NULL,
    server_id   TEXT NOT NULL,
    chunk_index INT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    stored_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chunk_id, server_id)
);
CREATE INDEX IF NOT EXISTS replicas_by_server ON dfs.replicas (server_id);

-- Committed files; deleted_at is set by FileDeleted (their chunks are then garbage).
CREATE TABLE IF NOT EXISTS dfs.files (
    file_id      TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    replicas     INT NOT NULL,
    chunk_count  INT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ
);

-- The chunks of each file, in order.
CREATE TABLE IF NOT EXISTS dfs.file_chunks (
    file_id     TEXT NOT NULL,
    chunk_index INT NOT NULL,
    chunk_id    TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    PRIMARY KEY (file_id, chunk_index)
);
CREATE INDEX IF NOT EXISTS file_chunks_by_chunk ON dfs.file_chunks (chunk_id);
