-- Hearing back (issue #15): what Borcelle's SMTP receiver (or MailJet's Parse webhook) accepted
-- for a reply, bounce or unsubscribe address, filed under the ledger row the address names.
CREATE TABLE inbound_messages (
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The ledger row the address named (the message this answers or reports on).
    ledger_id       uuid REFERENCES messages (id) ON DELETE SET NULL,
    contact_id      uuid REFERENCES contacts (id) ON DELETE SET NULL,
    -- reply: a person answered; auto_reply: an out-of-office or other automatic answer (never
    -- counted as a reply); bounce: a delivery status notification; unsubscribe: a mail to the
    -- List-Unsubscribe address; report: anything else that came to a bounce address.
    kind            text NOT NULL CHECK (kind IN ('reply', 'auto_reply', 'bounce', 'unsubscribe', 'report')),
    -- The same message delivered twice (a client retrying after a lost 250) is filed once.
    dedup_key       text NOT NULL,
    envelope_from   text NOT NULL DEFAULT '',
    from_email      text NOT NULL DEFAULT '',
    from_name       text,
    -- The From address is not the contact's (a colleague answering for them, another address).
    from_other      boolean NOT NULL DEFAULT false,
    subject         text NOT NULL DEFAULT '',
    -- The new text of the answer; the quoted history is kept apart to be folded.
    body_text       text NOT NULL DEFAULT '',
    quoted_text     text NOT NULL DEFAULT '',
    -- Sanitised before it is stored (ammonia): safe to show as it is.
    body_html       text,
    header_message_id text,
    -- The message as received, byte for byte, in attachment storage.
    raw_key         text NOT NULL,
    raw_size        bigint NOT NULL,
    -- false: the MIME could not be read; only the raw bytes are kept.
    parsed          boolean NOT NULL DEFAULT true,
    -- Delivery status notifications: the RFC 3464 status (5.1.1) and the remote server's words.
    dsn_status      text,
    dsn_diagnostic  text,
    received_via    text NOT NULL DEFAULT 'smtp' CHECK (received_via IN ('smtp', 'mailjet')),
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, dedup_key)
);
CREATE INDEX inbound_owner_contact ON inbound_messages (owner_id, contact_id, received_at DESC, id);
CREATE INDEX inbound_owner_received ON inbound_messages (owner_id, received_at DESC, id);
CREATE INDEX inbound_ledger ON inbound_messages (ledger_id);

-- The files an inbound message carries: read back from its raw bytes on download.
CREATE TABLE inbound_attachments (
    inbound_id   uuid NOT NULL REFERENCES inbound_messages (id) ON DELETE CASCADE,
    -- The MIME part's index in the parsed message.
    part         integer NOT NULL,
    owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type text NOT NULL,
    size         bigint NOT NULL,
    -- Set for an inline part referenced by the HTML (cid:).
    content_id   text,
    PRIMARY KEY (inbound_id, part)
);

-- Replies that come through MailJet's Parse API name the message they answer in In-Reply-To.
CREATE INDEX messages_message_id ON messages (message_id);

-- The contacts list shows who replied last (one index lookup per row of a page).
CREATE INDEX inbound_contact_replies ON inbound_messages (owner_id, contact_id, received_at DESC) WHERE kind = 'reply';
