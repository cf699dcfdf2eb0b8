-- depends: 0001_initial
-- The fingerprint of each job's challenge (shared.protocol.challenge_digest), so a
-- solution can say which challenge it answers; NULL for jobs stored before it.
ALTER TABLE job ADD COLUMN challenge_digest text NULL;
