-- An occurrence that could never run (an unknown owner, a deleted note) is recorded as failed,
-- with the reason, so that the schedule's status shows it (lastRun Failed; a Broadcast's phase
-- Failed) as the operator shows a failed Job.
ALTER TABLE occurrences DROP CONSTRAINT occurrences_status_check;
ALTER TABLE occurrences ADD CONSTRAINT occurrences_status_check
    CHECK (status IN ('running', 'done', 'replaced', 'failed'));
ALTER TABLE occurrences ADD COLUMN error text;
