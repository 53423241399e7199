-- Issue #17: a ledger row is written three times on its way to `sent` (queued, claimed, sent), and
-- each write adds an entry to every index of `messages` whose predicate holds for the new version
-- (the status changes each time, so no write is a HOT update). `messages_task` (task_id, status)
-- took one at each of the three, and no query needs it: what looks rows up by task alone
-- (a task's deletion and history, the suppression check at queue time) reads the
-- (task_id, to_email) index's prefix, and the one query that looked for a status within a task
-- (putting failed rows back in the queue) asks for an owner's failed rows, which this partial
-- index holds and nothing else: a row enters it only when it fails.
DROP INDEX messages_task;
CREATE INDEX messages_failed ON messages (owner_id, task_id) WHERE status = 'failed';
