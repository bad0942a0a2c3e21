-- The tree as `cluster.query.tree` returns it, rendered once per projected batch (served as is).
ALTER TABLE cluster.managers ADD COLUMN IF NOT EXISTS tree TEXT NOT NULL DEFAULT '{}';
-- The state is read back from the tree itself; `doc` is no longer written.
ALTER TABLE cluster.managers ALTER COLUMN doc DROP NOT NULL;
