-- Autocomplete by word: each contact's words (of name, email and company) in a btree, so that a
-- prefix of any word is answered in order with LIMIT; and each owner's vocabulary (distinct words)
-- with trigrams, so that a typo or a fragment is matched against words, not against every contact.
-- Both are kept by statement triggers on contacts.

CREATE TABLE contact_words (
    owner_id   uuid NOT NULL,
    -- "C": byte order, so that LIKE 'prefix%' is an index range whatever the database's collation.
    word       text COLLATE "C" NOT NULL,
    contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    PRIMARY KEY (owner_id, word, contact_id)
);
CREATE INDEX contact_words_contact ON contact_words (contact_id);

-- Insert-only: a word stays after its last contact goes (autocomplete joins contact_words, so such
-- a word finds nothing). Digits alone (the 42 of john.smith.42@) are not worth a typo match.
CREATE TABLE contact_vocabulary (
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    word     text COLLATE "C" NOT NULL,
    PRIMARY KEY (owner_id, word)
);
CREATE INDEX contact_vocabulary_trgm ON contact_vocabulary USING gin (word gin_trgm_ops);

-- The distinct words of a contact's `search` (lower-case name, email and company).
CREATE FUNCTION contact_search_words(search text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT DISTINCT w FROM regexp_split_to_table(search, '[^[:alnum:]]+') AS w WHERE w <> '' $$;

CREATE FUNCTION contact_words_add(owner uuid[], contact uuid[], search text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO contact_words (owner_id, word, contact_id)
    SELECT c.owner, w, c.contact
    FROM unnest(owner, contact, search) AS c(owner, contact, search), contact_search_words(c.search) AS w;
    -- Sorted, so that concurrent statements take the new words' locks in the same order.
    INSERT INTO contact_vocabulary (owner_id, word)
    SELECT DISTINCT c.owner, w
    FROM unnest(owner, search) AS c(owner, search), contact_search_words(c.search) AS w
    WHERE w !~ '^[0-9]+$'
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION contacts_words_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM contact_words_add(array_agg(owner_id), array_agg(id), array_agg(search)) FROM added;
    RETURN NULL;
END $$;

CREATE FUNCTION contacts_words_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contact_words w USING changed n JOIN previous o ON o.id = n.id
    WHERE w.contact_id = n.id AND o.search IS DISTINCT FROM n.search;
    PERFORM contact_words_add(array_agg(n.owner_id), array_agg(n.id), array_agg(n.search))
    FROM changed n JOIN previous o ON o.id = n.id
    WHERE o.search IS DISTINCT FROM n.search;
    RETURN NULL;
END $$;

CREATE TRIGGER contacts_words_inserted AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION contacts_words_inserted();
CREATE TRIGGER contacts_words_updated AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS previous NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION contacts_words_updated();

-- The contacts that exist already.
SELECT contact_words_add(array_agg(owner_id), array_agg(id), array_agg(search)) FROM contacts;
