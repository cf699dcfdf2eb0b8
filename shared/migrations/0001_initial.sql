-- wspool initial schema: a job per block height, a solution per (task_id, nonce), a worker row per connection.

CREATE TABLE job (
    id bigserial PRIMARY KEY,
    block_height bigint NOT NULL UNIQUE,
    epoch_challenge jsonb NOT NULL,
    task_id uuid NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    broadcast_at timestamptz NULL
);

CREATE TABLE solution (
    id bigserial PRIMARY KEY,
    task_id uuid NOT NULL,
    nonce text NOT NULL,
    hardware_id text NOT NULL,
    caption text NOT NULL,
    solution jsonb NOT NULL,
    solution_target bigint NOT NULL,
    valid boolean NOT NULL DEFAULT false,
    checked boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    broadcast_at timestamptz NULL,
    UNIQUE (task_id, nonce)
);

CREATE INDEX solution_hardware_caption_idx ON solution (hardware_id, caption);
CREATE INDEX solution_created_at_idx ON solution (created_at);

CREATE TABLE worker (
    id bigserial PRIMARY KEY,
    ip text NOT NULL,
    remote_ip text NOT NULL,
    address text NOT NULL,
    hardware text NOT NULL,
    hardware_id text NOT NULL,
    caption text NOT NULL,
    server_instance text NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    disconnected_at timestamptz NULL,
    close_code integer NULL
);

CREATE INDEX worker_open_idx ON worker (server_instance) WHERE disconnected_at IS NULL;
CREATE INDEX worker_hardware_id_idx ON worker (hardware_id);
