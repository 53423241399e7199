-- Contacts, private to their owner, with trigram search for autocomplete.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE contacts (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email      text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    phone      text CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    company    text CHECK (length(company) <= 200),
    address    text CHECK (length(address) <= 1000),
    tax_id     text CHECK (length(tax_id) <= 64),
    tags       text[] NOT NULL DEFAULT '{}',
    notes      text NOT NULL DEFAULT '' CHECK (length(notes) <= 10000),
    -- What autocomplete and search match against: name, email and company, lower case.
    search     text GENERATED ALWAYS AS (lower(name || ' ' || email || ' ' || coalesce(company, ''))) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX contacts_owner_email ON contacts (owner_id, email);
-- Keyset pagination for each sort order.
CREATE INDEX contacts_owner_name ON contacts (owner_id, lower(name), id);
CREATE INDEX contacts_owner_created ON contacts (owner_id, created_at, id);
CREATE INDEX contacts_owner_updated ON contacts (owner_id, updated_at, id);
CREATE INDEX contacts_tags ON contacts USING gin (tags);
CREATE INDEX contacts_search_trgm ON contacts USING gin (search gin_trgm_ops);
-- Prefix matches for short autocomplete queries, whatever the database's collation.
CREATE INDEX contacts_owner_name_prefix ON contacts (owner_id, lower(name) text_pattern_ops);
CREATE INDEX contacts_owner_email_prefix ON contacts (owner_id, email text_pattern_ops);
CREATE INDEX contacts_owner_company_prefix ON contacts (owner_id, lower(company) text_pattern_ops);
