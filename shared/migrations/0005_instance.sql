-- depends: 0004_worker_ban
-- Every running service instance, refreshed by its heartbeat (shared/instances.py),
-- so one dashboard shows the whole cluster. `stats` is what only that instance
-- knows (its connections, closes, latency histogram, fan-out lag, current job).
CREATE TABLE instance (
    role text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    stopped_at timestamptz NULL,
    ready boolean NOT NULL,
    stats jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (role, name)
);
