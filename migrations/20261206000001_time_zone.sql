-- The time zone every page shows times in (an IANA name, checked by the application); NULL means
-- the reader's browser's.
ALTER TABLE users ADD COLUMN time_zone text CHECK (time_zone IS NULL OR length(time_zone) BETWEEN 1 AND 64);
