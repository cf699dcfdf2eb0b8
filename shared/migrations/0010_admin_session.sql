-- depends: 0009_worker_ban_scope
-- The dashboard's login sessions (node_server/sessions.py), shared by every
-- node_server process and replica so a browser's requests may land on any.
-- `digest` is an HMAC of the cookie under the admin token: the table holds no
-- usable cookie, and a new admin_token ends every session.
CREATE TABLE admin_session (
    digest bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX admin_session_expires_at_idx ON admin_session (expires_at);
