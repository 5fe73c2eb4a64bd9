-- Spillway archive schema, version 3: the cold boundary of each index prefix.
-- Every event with a @timestamp below `boundary` is read from this database (the events table);
-- everything at or above it from Elasticsearch. `archiver retention` moves it forward to the end
-- of the last UTC day whose daily index it verified as fully archived, BEFORE deleting that
-- index, so some tier always answers for every instant. It never moves back: search relies on
-- everything below it being here. No row: nothing was ever dropped (Elasticsearch holds all).
CREATE TABLE IF NOT EXISTS cold_boundary (
    index_prefix text        COLLATE "C" NOT NULL,
    boundary     timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cold_boundary_pkey PRIMARY KEY (index_prefix)
);
