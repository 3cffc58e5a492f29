-- An approval belongs to the paused graph run that asked for it, and lapses at a deadline.
ALTER TABLE approvals ADD COLUMN run_id TEXT NOT NULL DEFAULT '';
ALTER TABLE approvals ADD COLUMN expires_at TIMESTAMPTZ;
