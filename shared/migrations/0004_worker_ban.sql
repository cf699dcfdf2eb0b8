-- depends: 0003_job_retired_at
-- Bans worker_server imposed (worker_server/bans.py): one row per banned worker
-- identity (hardware_id) or address, overwritten by its next ban, so every
-- instance refuses it and operators can list them.
CREATE TABLE worker_ban (
    kind text NOT NULL CHECK (kind IN ('identity', 'ip')),
    key text NOT NULL,
    banned_at timestamptz NOT NULL DEFAULT now(),
    banned_until timestamptz NOT NULL,
    reason text NOT NULL,
    server_instance text NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX worker_ban_until_idx ON worker_ban (banned_until);
