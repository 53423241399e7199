-- Attachments: files users upload and send with messages and notes. The bytes live in the object
-- store (a local directory or S3) under object_key; a row exists only once its object does.

CREATE TABLE attachments (
    id           uuid PRIMARY KEY,
    owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    object_key   text NOT NULL UNIQUE,
    -- Sanitised: no path, no control characters or quotes, bounded length.
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    -- Sniffed from the bytes, never taken from the client.
    content_type text NOT NULL CHECK (length(content_type) BETWEEN 1 AND 255),
    size         bigint NOT NULL CHECK (size > 0),
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_owner ON attachments (owner_id, created_at DESC, id);

-- The attachments a task's email carries, in the order the sender listed them. An attachment
-- cannot be deleted while a task refers to it (deleting the user removes both together).
CREATE TABLE task_attachments (
    task_id       uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attachment_id uuid NOT NULL REFERENCES attachments (id),
    position      integer NOT NULL,
    PRIMARY KEY (task_id, attachment_id),
    UNIQUE (task_id, position)
);
CREATE INDEX task_attachments_attachment ON task_attachments (attachment_id);
