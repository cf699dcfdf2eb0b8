-- depends: 0002_job_challenge_digest
-- A job an operator retired (a height far above the chain's, sent by mistake, or
-- a test run's): kept for accounting, no longer anyone's current job, and no
-- longer holding its height, so a real job may take that height later.
ALTER TABLE job ADD COLUMN retired_at timestamptz NULL;
ALTER TABLE job DROP CONSTRAINT job_block_height_key;
CREATE UNIQUE INDEX job_current_height_idx ON job (block_height) WHERE retired_at IS NULL;
CREATE INDEX job_block_height_idx ON job (block_height);
