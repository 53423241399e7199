-- Issue #17: a send to a tag is queued in chunks, each committed on its own, so that delivery
-- starts as soon as the first chunk is in the ledger instead of after the last one (a note to a
-- million contacts took 51 s to queue, and nothing was sent meanwhile).
--
-- While `queueing`, the task is `running`, its total is the number of rows queued so far, and it
-- cannot become `done`. The chunks walk the owner's contacts in (created_at, id) order, over
-- `contacts_owner_created`, from the cursor to the task's own creation time: a contact created
-- after the send is not one of its recipients. A chunk writes its rows, moves the cursor and the
-- counts in one transaction, so a queuer that stops anywhere (a crash, a restart) leaves a task
-- that another one resumes from the cursor once the lease has run out: each recipient queued
-- once.
ALTER TABLE tasks ADD COLUMN queueing boolean NOT NULL DEFAULT false;
ALTER TABLE tasks ADD COLUMN queue_tags text[];
ALTER TABLE tasks ADD COLUMN queue_after_created timestamptz;
ALTER TABLE tasks ADD COLUMN queue_after_id uuid;
ALTER TABLE tasks ADD COLUMN queue_lease timestamptz;
ALTER TABLE tasks ADD CONSTRAINT tasks_queueing_check
    CHECK (NOT queueing OR (status = 'running' AND queue_tags IS NOT NULL AND queue_lease IS NOT NULL));
CREATE INDEX tasks_queueing ON tasks (queue_lease) WHERE queueing;
