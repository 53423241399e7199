-- Notes, tasks (one send to one or many contacts), the delivery ledger and notifications.

CREATE TABLE notes (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body       text NOT NULL CHECK (length(body) <= 100000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notes_owner ON notes (owner_id, updated_at DESC, id);

-- A task is one send: its content, its recipients' count and live counters kept by the workers.
CREATE TABLE tasks (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('message', 'note')),
    note_id     uuid REFERENCES notes (id) ON DELETE SET NULL,
    subject     text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    body        text NOT NULL CHECK (length(body) <= 100000),
    total       integer NOT NULL CHECK (total > 0),
    sent        integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK (sent + failed <= total)
);
CREATE INDEX tasks_owner ON tasks (owner_id, created_at DESC, id);
CREATE INDEX tasks_owner_running ON tasks (owner_id) WHERE status = 'running';

-- The ledger: one row per (task, recipient), written before anything is sent.
CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    task_id         uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    contact_id      uuid REFERENCES contacts (id) ON DELETE SET NULL,
    to_email        text NOT NULL,
    to_name         text,
    -- Stable across retries, so that a duplicate from the crash window can be recognised.
    message_id      text NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    last_error      text,
    provider_id     text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, to_email)
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX messages_leased ON messages (lease_until) WHERE status = 'sending';
CREATE INDEX messages_task ON messages (task_id, status);
CREATE INDEX messages_owner_created ON messages (owner_id, created_at DESC, id);
CREATE INDEX messages_owner_contact ON messages (owner_id, contact_id, created_at DESC, id);

CREATE TABLE notifications (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL DEFAULT '',
    data       jsonb NOT NULL DEFAULT '{}',
    read_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC, id);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
