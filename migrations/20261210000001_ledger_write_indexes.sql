-- Issue #17: a ledger row is written three times on its way to `sent` (queued, claimed, sent), and
-- no write is a HOT update, so each adds an entry to every index of `messages` that holds the new
-- version. Two of those entries served lookups that can do without them:
--
-- * `messages_message_id`: every Message-ID Borcelle writes is `<` + the row's id without dashes
--   + `@` + the domain + `>` (tasks, notes, occurrences and reminders all build it so), so a reply's
--   `In-Reply-To` or `References` names its row's id, which the primary key finds.
-- * `messages_provider_id` held every sent row: over SMTP the provider id is the server's `250`
--   reply, which nothing looks up. Only MailJet's events name a row by provider id, and MailJet's
--   ids (its MessageID) are numbers: the index keeps those alone.
DROP INDEX messages_message_id;
DROP INDEX messages_provider_id;
CREATE INDEX messages_provider_id ON messages (provider_id) WHERE provider_id ~ '^[0-9]+$';
