-- Reminders and broadcasts: standalone schedules kept in PostgreSQL (driven by serve's in-process
-- scheduler), and the occurrence rows that make every occurrence run once in either mode.

ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check CHECK (kind IN ('message', 'note', 'reminder', 'broadcast'));

-- A ScheduledReminder or a Broadcast created through the web UI or the API, with the same spec and
-- status shapes as the custom resources (crds/src/resources.rs).
CREATE TABLE schedules (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('ScheduledReminder', 'Broadcast')),
    -- The reminder's owner, or the admin who created the broadcast.
    owner_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    spec              jsonb NOT NULL,
    generation        bigint NOT NULL DEFAULT 1,
    status            jsonb NOT NULL DEFAULT '{}',
    -- When the scheduler looks at it next; NULL when nothing more will ever be due.
    next_run_at       timestamptz,
    -- The occurrence most recently started or skipped.
    last_scheduled_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX schedules_reminder_name ON schedules (owner_id, name) WHERE kind = 'ScheduledReminder';
CREATE UNIQUE INDEX schedules_broadcast_name ON schedules (name) WHERE kind = 'Broadcast';
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE next_run_at IS NOT NULL;

-- One row per (resource, scheduled time), written in the transaction that queues the occurrence's
-- work: whichever process (serve's scheduler, a Job's retry) comes second finds it and does nothing.
CREATE TABLE occurrences (
    id           uuid PRIMARY KEY,
    -- schedules.id in standalone mode, the resource's metadata.uid in Kubernetes.
    resource_uid uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('ScheduledReminder', 'Broadcast')),
    -- The resource's name (namespace/name in Kubernetes).
    resource     text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    owner_id     uuid REFERENCES users (id) ON DELETE CASCADE,
    -- The email sends it queued, if any.
    task_id      uuid REFERENCES tasks (id) ON DELETE SET NULL,
    -- Users notified (broadcast) or emails queued (reminder).
    recipients   integer NOT NULL DEFAULT 0,
    -- Recipients named in the spec that were not found, reported to the owner.
    skipped      jsonb NOT NULL DEFAULT '[]',
    -- replaced: stopped by a newer occurrence (concurrencyPolicy Replace).
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'replaced')),
    -- When the row was written (not when its transaction began): how late the occurrence started.
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    UNIQUE (resource_uid, scheduled_at)
);
CREATE INDEX occurrences_running ON occurrences (resource_uid) WHERE status = 'running';

-- Broadcast notifications disappear from the bell once the broadcast expires.
ALTER TABLE notifications ADD COLUMN expires_at timestamptz;
