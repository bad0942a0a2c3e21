-- The audit trail of engine.exec: one row per call, allowed or refused (ExecAudited events).
CREATE TABLE IF NOT EXISTS engine.audit (
    seq         BIGINT PRIMARY KEY,
    system_id   TEXT NOT NULL,
    module      TEXT NOT NULL,
    module_id   TEXT,
    who         TEXT,
    roles       JSONB NOT NULL,
    method      TEXT NOT NULL,
    args        JSONB NOT NULL,
    outcome     TEXT NOT NULL,
    message     TEXT,
    duration_ms BIGINT NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_module ON engine.audit (module_id, seq DESC);
CREATE INDEX IF NOT EXISTS audit_by_system ON engine.audit (system_id, module, seq DESC);
