-- Mail that respects consent (issue #14): first and last names for personalised mail, the
-- suppression list, and ledger states for suppressed and bounced recipients.

-- First and last name, split from the display name for the contacts that exist (the same rule as
-- borcelle_mail::merge::split_name: "Last, First" is read as such; otherwise the first word is the
-- first name and the rest the last name). Both stay editable.
ALTER TABLE contacts
    ADD COLUMN first_name text CHECK (length(first_name) BETWEEN 1 AND 100),
    ADD COLUMN last_name  text CHECK (length(last_name) BETWEEN 1 AND 100);

WITH normalised AS (
    SELECT id, regexp_replace(btrim(name), '\s+', ' ', 'g') AS n FROM contacts
), parts AS (
    SELECT id,
           CASE WHEN position(',' IN n) > 0 THEN btrim(substr(n, position(',' IN n) + 1))
                ELSE split_part(n, ' ', 1) END AS first_part,
           CASE WHEN position(',' IN n) > 0 THEN btrim(substr(n, 1, position(',' IN n) - 1))
                ELSE btrim(substr(n, length(split_part(n, ' ', 1)) + 1)) END AS last_part
    FROM normalised
)
UPDATE contacts c SET first_name = nullif(left(p.first_part, 100), ''), last_name = nullif(left(p.last_part, 100), '')
FROM parts p WHERE c.id = p.id;

-- The suppression list, per owner: addresses Borcelle never mails again for that owner, with why.
-- Only the owner's explicit action removes an entry.
CREATE TABLE suppressions (
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    reason     text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')),
    detail     text CHECK (length(detail) <= 1000),
    -- The ledger row that caused it (an unsubscribe link, a bounce), when there is one.
    message_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, email)
);
CREATE INDEX suppressions_owner_created ON suppressions (owner_id, created_at DESC, email);

-- Ledger rows: `suppressed` (never sent: the address is on the owner's list) and `bounced` (sent,
-- then reported back as undeliverable). `merge` is the recipient's fields as they were queued, so
-- that what each recipient was sent can be shown again.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'suppressed', 'bounced'));
ALTER TABLE messages ADD COLUMN merge jsonb;
-- Provider feedback finds its row by the provider's id (MailJet's MessageID).
CREATE INDEX messages_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL;

ALTER TABLE tasks ADD COLUMN suppressed integer NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN bounced integer NOT NULL DEFAULT 0;
ALTER TABLE tasks DROP CONSTRAINT tasks_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_check CHECK (sent + failed + suppressed <= total);

-- The server's signing keys (unsubscribe links), created once and shared by every process.
CREATE TABLE signing_keys (
    name       text PRIMARY KEY,
    key        bytea NOT NULL CHECK (length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The dev outbox keeps each email's headers (From, Reply-To, List-Unsubscribe…), as sent.
ALTER TABLE outbox ADD COLUMN headers text NOT NULL DEFAULT '';
