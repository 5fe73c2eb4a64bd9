-- Spillway archive schema, version 1.
-- ids and client ids sort with COLLATE "C" (byte order), the same order Elasticsearch uses for
-- keyword fields, so that a cursor can cross from one store to the other without repeating or
-- skipping events. Timestamps are microseconds in both stores (ingest truncates to microseconds).
CREATE TABLE IF NOT EXISTS events (
    id          text COLLATE "C" NOT NULL,
    client_id   text COLLATE "C" NOT NULL,
    type        text COLLATE "C",
    ts          timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL,
    payload     jsonb,
    CONSTRAINT events_pkey PRIMARY KEY (id)
);

-- "All events of client X between T1 and T2, in (ts, id) order" is one index range scan.
CREATE INDEX IF NOT EXISTS events_client_ts_id ON events (client_id, ts, id);
-- Time-bucketed comparisons (archiver verify) and time-only reads.
CREATE INDEX IF NOT EXISTS events_ts_id ON events (ts, id);

-- The archiver's position in Elasticsearch: per index (by UUID, so a recreated index with the same
-- name starts over) and shard, the highest _seq_no whose document is in the events table. It is
-- written in the same transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS archive_checkpoints (
    index_uuid  text        NOT NULL,
    shard       integer     NOT NULL,
    index_name  text        NOT NULL,
    seq_no      bigint      NOT NULL,
    rows        bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT archive_checkpoints_pkey PRIMARY KEY (index_uuid, shard)
);
