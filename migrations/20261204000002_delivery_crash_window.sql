-- The crash window of delivery (issue #13.3).
--
-- The dev outbox keeps one copy per Message-ID: a send repeated after a crash (its outcome was not
-- recorded) finds the copy and adds nothing. Copies an earlier crash left are dropped first.
DELETE FROM outbox a USING outbox b WHERE a.message_id = b.message_id AND (a.created_at, a.id) > (b.created_at, b.id);
CREATE UNIQUE INDEX outbox_message_id ON outbox (message_id);

-- Which delivery engine holds a claim: an engine that starts again under the same name (the same
-- pod after a container restart, the same host and port) gives its previous run's claims back at
-- once instead of waiting for their lease.
ALTER TABLE messages ADD COLUMN claimed_by text;
