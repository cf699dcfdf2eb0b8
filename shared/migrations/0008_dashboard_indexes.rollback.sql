-- transactional: false
DROP INDEX CONCURRENTLY IF EXISTS worker_disconnected_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS job_created_at_idx;
