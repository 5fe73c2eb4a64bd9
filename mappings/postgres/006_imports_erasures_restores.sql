-- Spillway archive schema, version 6: imported history, erasures and restores.
--
-- archive_imports: one row per source `archiver import` loads (a file, by path, size and
-- modification time; or a table, by name and column mapping). position counts the source's
-- records committed to the archive, in the same transaction as the rows: a killed import resumes
-- there. finished_at is set once every record is committed, verified by day and readable (the
-- cold boundary covers newest_day).
CREATE TABLE IF NOT EXISTS archive_imports (
    source         text        COLLATE "C" PRIMARY KEY,
    position       bigint      NOT NULL DEFAULT 0,
    total          bigint      NOT NULL DEFAULT 0,
    rows_inserted  bigint      NOT NULL DEFAULT 0,
    rows_existing  bigint      NOT NULL DEFAULT 0,
    newest_day     timestamptz,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
ALTER TABLE archive_state ADD COLUMN IF NOT EXISTS rows_imported bigint NOT NULL DEFAULT 0;

-- archive_erasures: `archiver forget` records who asked to forget which client, when, and how
-- many events it removed from each store. The client id is kept: it is what proves the erasure,
-- and what lets an operator apply it again after restoring an older backup.
CREATE TABLE IF NOT EXISTS archive_erasures (
    id           bigserial   PRIMARY KEY,
    client_id    text        COLLATE "C" NOT NULL,
    requested_by text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    es_deleted   bigint      NOT NULL DEFAULT 0,
    pg_deleted   bigint      NOT NULL DEFAULT 0
);

-- archive_restores: the archiver found this database behind Elasticsearch's retention log (it
-- came back from a backup taken before a retention pass: its cold boundary is below days whose
-- indices were deleted). The archiver re-archives what Elasticsearch still holds, moves the
-- boundary to the end of the last deleted day, and records here how many events of the deleted
-- days the restored archive lacks (gone: only the lost database held them).
CREATE TABLE IF NOT EXISTS archive_restores (
    id              bigserial   PRIMARY KEY,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    boundary_found  timestamptz,
    dropped_through timestamptz NOT NULL,
    repaired_at     timestamptz,
    events_lost     bigint,
    days_lost       jsonb
);
