-- depends: 0008_dashboard_indexes
-- Where a ban on a worker identity holds (worker_server/bans.py): a hardware_id
-- is the worker's own claim, so its ban holds only in the address block the
-- offence came from ('198.51.100.0/24'); '' is everywhere, for a block's own
-- ban and for an identity the worker proved. One row per kind, key and scope.
ALTER TABLE worker_ban ADD COLUMN scope text NOT NULL DEFAULT '';
ALTER TABLE worker_ban DROP CONSTRAINT worker_ban_pkey;
ALTER TABLE worker_ban ADD PRIMARY KEY (kind, key, scope);
