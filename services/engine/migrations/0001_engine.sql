-- The engine read model: drivers, modules, their statuses, systems and the places in them.
-- Every row carries `seq`, the stream sequence of the event that last changed it.
CREATE TABLE IF NOT EXISTS engine.drivers (
    driver_id TEXT PRIMARY KEY,
    metadata  JSONB NOT NULL,
    seq       BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS engine.modules (
    module_id TEXT PRIMARY KEY,
    driver_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    seq       BIGINT NOT NULL
);

-- Last reported value of each status of each module (the status read model).
CREATE TABLE IF NOT EXISTS engine.statuses (
    module_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    value     JSONB NOT NULL,
    seq       BIGINT NOT NULL,
    PRIMARY KEY (module_id, name)
);

CREATE TABLE IF NOT EXISTS engine.systems (
    system_id TEXT PRIMARY KEY,
    modules   JSONB NOT NULL,
    seq       BIGINT NOT NULL
);

-- `<name>_<idx>` of a system is held by `module_id` (rebuilt on every SystemSet).
CREATE TABLE IF NOT EXISTS engine.places (
    system_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    module_id TEXT NOT NULL,
    PRIMARY KEY (system_id, name, idx)
);
