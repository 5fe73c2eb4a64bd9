-- Spillway archive schema, version 5: which Elasticsearch index prefix this schema archives.
-- One schema archives one prefix. Two prefixes archived into one schema made verify report each
-- other's events as extra and status count each other's rows; the first archiver command to run
-- records its prefix here and every later one with another prefix is refused, naming
-- postgres.schema. Checkpoints and the cold boundary already carry their own keys.
CREATE TABLE IF NOT EXISTS archive_owner (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    index_prefix text        COLLATE "C" NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now()
);
