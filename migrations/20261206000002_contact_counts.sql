-- How many contacts each owner has, for the contacts table's total without counting 100,000 rows
-- on every page. Kept exact by statement triggers on contacts; spread over 16 rows per owner
-- (a statement adds to one of them at random) so that concurrent imports and creates of one
-- owner do not queue on a single counter row. The total is the sum of the owner's rows.
CREATE TABLE contact_counts (
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    shard    smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    n        bigint NOT NULL,
    PRIMARY KEY (owner_id, shard)
);

CREATE FUNCTION contact_counts_add(owners uuid[], deltas bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO contact_counts (owner_id, shard, n)
    SELECT c.owner_id, s.shard, c.delta
    FROM unnest(owners, deltas) AS c(owner_id, delta)
    CROSS JOIN (SELECT floor(random() * 16)::smallint AS shard) s
    -- An owner whose account is being deleted (its contacts go with it) is counted no more.
    WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = c.owner_id)
    ON CONFLICT (owner_id, shard) DO UPDATE SET n = contact_counts.n + EXCLUDED.n;
$$;

CREATE FUNCTION contacts_counted_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM contact_counts_add(array_agg(owner_id), array_agg(n)) FROM (
        SELECT owner_id, count(*) AS n FROM added GROUP BY owner_id
    ) per_owner;
    RETURN NULL;
END $$;

CREATE FUNCTION contacts_counted_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM contact_counts_add(array_agg(owner_id), array_agg(-n)) FROM (
        SELECT owner_id, count(*) AS n FROM removed GROUP BY owner_id
    ) per_owner;
    RETURN NULL;
END $$;

CREATE TRIGGER contacts_counted_inserted AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION contacts_counted_inserted();
CREATE TRIGGER contacts_counted_deleted AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION contacts_counted_deleted();

-- The contacts that exist already.
INSERT INTO contact_counts (owner_id, shard, n) SELECT owner_id, 0, count(*) FROM contacts GROUP BY owner_id;
