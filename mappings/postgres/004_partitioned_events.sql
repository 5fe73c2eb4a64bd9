-- Spillway archive schema, version 4: one partition per UTC day, identity (id, UTC day).
--
-- An event is identified by its id AND the UTC day of its timestamp: that is what Elasticsearch
-- enforces (one daily index per day, _id unique inside an index). Version 1 had PRIMARY KEY (id),
-- so an id reused on another day was silently dropped by the archive. Here every partition holds
-- exactly one UTC day and carries its own UNIQUE (id) index (pgstore creates partitions with it),
-- so the database enforces (id, day) itself. There is no DEFAULT partition: a row whose day has no
-- partition is an error that stops the batch, never a silently parked or dropped row.
--
-- An existing version-1 table with rows is renamed events_v1 and stays readable through the
-- events_all view until `archiver migrate` has moved its rows into the partitions (see
-- archive_v1_migration below). An empty version-1 table (a fresh install) is simply dropped.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass('events') AND c.relkind = 'r') THEN
        IF EXISTS (SELECT 1 FROM events) THEN
            ALTER TABLE events RENAME TO events_v1;
            ALTER INDEX events_pkey RENAME TO events_v1_pkey;
            ALTER INDEX events_client_ts_id RENAME TO events_v1_client_ts_id;
            ALTER INDEX events_ts_id RENAME TO events_v1_ts_id;
        ELSE
            DROP TABLE events;
        END IF;
    END IF;
END $$;

CREATE TABLE events (
    id          text COLLATE "C" NOT NULL,
    client_id   text COLLATE "C" NOT NULL,
    type        text COLLATE "C",
    ts          timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL,
    payload     jsonb
) PARTITION BY RANGE (ts);

-- Inherited by every partition. "All events of client X between T1 and T2, in (ts, id) order" is
-- one range scan per day touched; time-bucketed verification reads (ts, id) of one day.
CREATE INDEX events_client_ts_id ON events (client_id, ts, id);
CREATE INDEX events_ts_id ON events (ts, id);

-- Payloads of ~5 KB are TOASTed; lz4 compresses and decompresses several times faster than pglz
-- at a similar ratio. PostgreSQL 14+ built with lz4 only; elsewhere pglz stays.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        BEGIN
            EXECUTE 'ALTER TABLE events ALTER COLUMN payload SET COMPRESSION lz4';
        EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
            RAISE NOTICE 'lz4 compression is not available on this server; payloads use pglz';
        END;
    END IF;
END $$;

-- The move of a version-1 archive: one row while events_v1 exists. Rows of events_v1 at or
-- before (moved_ts, moved_id) in (ts, id) order have been copied into events, in the same
-- transaction that moved this position; rows after it have not. (-infinity, ''): nothing moved.
CREATE TABLE archive_v1_migration (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    moved_ts    timestamptz NOT NULL DEFAULT '-infinity',
    moved_id    text COLLATE "C" NOT NULL DEFAULT '',
    rows_moved  bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- events_all is what every reader queries: the partitioned table, plus, while a version-1 table
-- is being migrated, its rows not moved yet. Each event is in exactly one of the two parts at any
-- moment (the move and its position commit together, and writers skip an (id, day) still waiting
-- in events_v1), so readers see every event once throughout the migration.
DO $$
BEGIN
    IF to_regclass('events_v1') IS NOT NULL THEN
        INSERT INTO archive_v1_migration (id) VALUES (true);
        EXECUTE $v$CREATE VIEW events_all AS
            SELECT id, client_id, type, ts, ingested_at, payload FROM events
            UNION ALL
            SELECT v.id, v.client_id, v.type, v.ts, v.ingested_at, v.payload
              FROM events_v1 v, archive_v1_migration m
             WHERE (v.ts, v.id) > (m.moved_ts, m.moved_id)$v$;
    ELSE
        DROP TABLE archive_v1_migration;
        CREATE VIEW events_all AS SELECT id, client_id, type, ts, ingested_at, payload FROM events;
    END IF;
END $$;
