-- Issue #17: the ledger apart from where each of its rows stands.
--
-- A ledger row was written three times on its way to `sent`: queued, claimed, sent. The status
-- changes each time, so no write was a HOT update: each wrote a new version of the whole row
-- (its recipient's fields included) and an entry in every one of its indexes. What a claim and an
-- outcome change is a few narrow columns, so they now live in a table of their own:
--
-- * `ledger` (the table that was `messages`): whom, what and when, written once when the row is
--   queued and never changed after;
-- * `deliveries`: one row per ledger row, the same id: status, attempts, lease, outcome. A claim
--   and an outcome write a new version of this narrow row and an entry in its primary key and the
--   one partial index the new status belongs to, instead of the wide row and its five indexes.
--
-- The view `messages` is both, as one row: what reads the ledger with its status reads it there.
-- Every write goes to the tables.
ALTER TABLE messages RENAME TO ledger;

CREATE TABLE deliveries (
    -- The ledger row's id. Both rows are written in one statement and deleted with their task.
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL,
    task_id         uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'suppressed', 'bounced')),
    attempts        integer NOT NULL DEFAULT 0,
    -- When a waiting row is due; none once it waits for nothing (claimed, or finished).
    next_attempt_at timestamptz DEFAULT now(),
    -- When a claim runs out; only while claimed.
    lease_until     timestamptz,
    claimed_by      text,
    last_error      text,
    provider_id     text,
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- The claim finds due rows and expired claims by these columns alone, with no condition on the
    -- status: without statistics (a table just filled, before ANALYZE has seen it) PostgreSQL
    -- guesses that a status condition keeps a row in 200, and then sorts every due row of a large
    -- send for each claim instead of reading the index in order.
    CHECK ((next_attempt_at IS NOT NULL) = (status IN ('queued', 'retrying'))),
    CHECK ((lease_until IS NOT NULL) = (status = 'sending'))
);
INSERT INTO deliveries (id, owner_id, task_id, status, attempts, next_attempt_at, lease_until, claimed_by,
                        last_error, provider_id, sent_at, updated_at)
SELECT id, owner_id, task_id, status, attempts,
       CASE WHEN status IN ('queued', 'retrying') THEN next_attempt_at END,
       CASE WHEN status = 'sending' THEN coalesce(lease_until, now()) END,
       claimed_by, last_error, provider_id, sent_at, updated_at
FROM ledger;

DROP INDEX messages_due;
DROP INDEX messages_leased;
DROP INDEX messages_failed;
DROP INDEX messages_provider_id;
ALTER TABLE ledger
    DROP COLUMN status, DROP COLUMN attempts, DROP COLUMN next_attempt_at, DROP COLUMN lease_until,
    DROP COLUMN claimed_by, DROP COLUMN last_error, DROP COLUMN provider_id, DROP COLUMN sent_at,
    DROP COLUMN updated_at;

-- The queue: due rows in the order they are due, and claims whose lease runs out.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;
-- An owner's failed rows (putting them back in the queue); a row enters it only when it fails.
CREATE INDEX deliveries_failed ON deliveries (owner_id, task_id) WHERE status = 'failed';
-- MailJet's events name a row by its MessageID, a number; over SMTP the provider id is the
-- server's `250` reply, which nothing looks up.
CREATE INDEX deliveries_provider_id ON deliveries (provider_id) WHERE provider_id ~ '^[0-9]+$';

-- A ledger row's id, made by the statement that queues it: a UUIDv7 (RFC 9562: 48 bits of Unix
-- milliseconds, then 74 random bits), so that the rows of one chunk, and of one send, sit side by
-- side in every index keyed by id (both primary keys) instead of one per random leaf page: a large
-- send then dirties a few pages at the right edge, where a random id would touch, and evict, a page
-- of a tree larger than the buffer cache per row. The claim takes due rows in about this order too.
-- It is also the left part of the row's Message-ID, which never had to be unguessable: an
-- unsubscribe link carries an HMAC of the id, never the id alone.
CREATE FUNCTION new_ledger_id() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
                  52, 1), 53, 1), 'hex')::uuid
$$;

-- A ledger row's owner is its task's: deleting the owner deletes the task and, with it, the row.
-- The constraint checked each written row once more, against users, for nothing the task's own
-- constraint does not already give.
ALTER TABLE ledger DROP CONSTRAINT messages_owner_id_fkey;

CREATE VIEW messages AS
SELECT l.id, l.owner_id, l.task_id, l.contact_id, l.to_email, l.to_name, l.message_id,
       d.status, d.attempts, d.next_attempt_at, d.lease_until, d.last_error, d.provider_id, d.sent_at,
       l.created_at, d.updated_at, d.claimed_by, l.merge
FROM ledger l JOIN deliveries d ON d.id = l.id;
