-- transactional: false
DROP INDEX CONCURRENTLY IF EXISTS solution_hardware_id_created_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS worker_hardware_id_id_idx;
