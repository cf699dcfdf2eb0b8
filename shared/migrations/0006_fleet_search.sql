-- depends: 0005_instance
-- transactional: false
-- The fleet search (GET /api/fleet) per hardware id: its latest connection and
-- last disconnects (newest id first), and its solutions of the last hour and
-- its newest one, each an index range instead of every row the worker ever had
-- (a flapping worker has thousands of connections, a busy one millions of
-- solutions). CONCURRENTLY, so a running system keeps inserting meanwhile;
-- hence outside a transaction. No index on last_seen_at: the liveness refresh
-- rewrites it on every open row, and an index on it would end HOT updates.
CREATE INDEX CONCURRENTLY IF NOT EXISTS worker_hardware_id_id_idx ON worker (hardware_id, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS solution_hardware_id_created_at_idx
    ON solution (hardware_id, created_at);
