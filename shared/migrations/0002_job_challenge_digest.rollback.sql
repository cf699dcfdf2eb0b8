ALTER TABLE job DROP COLUMN challenge_digest;
