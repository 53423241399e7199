-- Clients (browsers, API scripts) that have logged in to an account, by the hash of the token in
-- their device cookie. Their failed logins on that account are counted on their own, so strangers
-- failing on the account cannot lock its owner out of a client the owner already uses.
CREATE TABLE login_devices (
    token_hash   bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_devices_user ON login_devices (user_id);
