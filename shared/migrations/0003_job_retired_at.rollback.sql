DROP INDEX job_block_height_idx;
DROP INDEX job_current_height_idx;
ALTER TABLE job ADD CONSTRAINT job_block_height_key UNIQUE (block_height);
ALTER TABLE job DROP COLUMN retired_at;
