-- depends: 0007_job_proof_target
-- transactional: false
-- The dashboard's queries as index ranges, not scans of whole tables (EXPLAINed
-- in tests/integration/test_dashboard_queries.py): jobs of the last minute and
-- hour and per minute (jobs are kept forever), and worker connections closed
-- per minute over the last half hour (a busy pool writes a row per connection).
-- Only closed rows are indexed, with their close code, so the chart reads the
-- index alone. disconnected_at is written once per row, at the close, which
-- was never a HOT update anyway (the open-rows index depends on it); the
-- liveness refresh of last_seen_at stays HOT. CONCURRENTLY, as in 0006.
CREATE INDEX CONCURRENTLY IF NOT EXISTS job_created_at_idx ON job (created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS worker_disconnected_at_idx
    ON worker (disconnected_at) INCLUDE (close_code) WHERE disconnected_at IS NOT NULL;
