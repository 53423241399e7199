-- Accounts, sessions, one-time tokens, API tokens, throttling and the dev outbox.

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    email             text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    display_name      text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    password_hash     text NOT NULL,
    role              text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    email_verified_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- Single-use tokens mailed to users (email verification, password reset); only their SHA-256 is stored.
CREATE TABLE user_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    -- A verification link carries the credentials of the registration that asked for it, so
    -- whoever controls the inbox decides which registration becomes the account.
    pending_password_hash text,
    pending_display_name  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX user_tokens_user_purpose ON user_tokens (user_id, purpose);
CREATE INDEX user_tokens_expires ON user_tokens (expires_at);

-- Server-side sessions; the cookie holds the secret, the table its SHA-256.
CREATE TABLE sessions (
    id_hash      bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ip           text,
    user_agent   text
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Personal API tokens for `Authorization: Bearer`.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash   bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at);

-- Fixed-window counters shared by every replica (login failures, resends, registrations).
CREATE TABLE rate_limits (
    key          text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL
);

-- The dev outbox: mail that is stored and shown instead of being sent.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    message_id   text NOT NULL,
    from_address text NOT NULL,
    to_address   text NOT NULL,
    to_name      text,
    subject      text NOT NULL,
    text_body    text NOT NULL,
    html_body    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_created ON outbox (created_at DESC);
