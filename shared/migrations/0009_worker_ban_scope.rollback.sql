-- Scoped identity bans have no place in the old key: they go.
DELETE FROM worker_ban WHERE scope <> '';
ALTER TABLE worker_ban DROP CONSTRAINT worker_ban_pkey;
ALTER TABLE worker_ban ADD PRIMARY KEY (kind, key);
ALTER TABLE worker_ban DROP COLUMN scope;
