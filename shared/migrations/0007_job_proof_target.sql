-- depends: 0006_fleet_search
-- The lowest proof target any node sent for the job's height: worker_server
-- tells a block candidate (at or above it) from a share by it. NULL for jobs
-- stored before it existed: their solutions all take the ordinary lane.
ALTER TABLE job ADD COLUMN proof_target bigint NULL;
