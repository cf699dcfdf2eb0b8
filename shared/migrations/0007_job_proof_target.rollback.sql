ALTER TABLE job DROP COLUMN proof_target;
