-- The word triggers of 0006, cheaper per statement: their statements now live in PL/pgSQL, which
-- keeps each statement's plan for the session, instead of a two-statement SQL function, which
-- PostgreSQL plans again at every call (a contact create spent more time planning the trigger's
-- two INSERTs than running them).

CREATE OR REPLACE FUNCTION contacts_words_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_words (owner_id, word, contact_id)
    SELECT a.owner_id, w, a.id FROM added a, contact_search_words(a.search) AS w;
    -- Sorted, so that concurrent statements take the new words' locks in the same order.
    INSERT INTO contact_vocabulary (owner_id, word)
    SELECT DISTINCT a.owner_id, w FROM added a, contact_search_words(a.search) AS w
    WHERE w !~ '^[0-9]+$'
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION contacts_words_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contact_words w USING changed n JOIN previous o ON o.id = n.id
    WHERE w.contact_id = n.id AND o.search IS DISTINCT FROM n.search;
    INSERT INTO contact_words (owner_id, word, contact_id)
    SELECT n.owner_id, w, n.id
    FROM changed n JOIN previous o ON o.id = n.id, contact_search_words(n.search) AS w
    WHERE o.search IS DISTINCT FROM n.search;
    INSERT INTO contact_vocabulary (owner_id, word)
    SELECT DISTINCT n.owner_id, w
    FROM changed n JOIN previous o ON o.id = n.id, contact_search_words(n.search) AS w
    WHERE o.search IS DISTINCT FROM n.search AND w !~ '^[0-9]+$'
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- Only the triggers above used it.
DROP FUNCTION contact_words_add(uuid[], uuid[], text[]);
