-- Spillway archive schema, version 2: what `archiver status` reports besides the checkpoints.
-- One row (id is always true). Rows written by the feed are counted per checkpoint in
-- archive_checkpoints.rows; rows written outside the feed (verify --repair, backfill) are counted
-- here, in the same transaction as the rows themselves.
CREATE TABLE IF NOT EXISTS archive_state (
    id                  boolean     PRIMARY KEY DEFAULT true CHECK (id),
    rows_repaired       bigint      NOT NULL DEFAULT 0,
    rows_backfilled     bigint      NOT NULL DEFAULT 0,
    last_error          text,
    last_error_at       timestamptz,
    last_verify_at      timestamptz,
    last_verify_from    timestamptz,
    last_verify_to      timestamptz,
    last_verify_missing bigint,
    last_verify_extra   bigint,
    last_verify_pending bigint,
    last_verify_repaired bigint
);
INSERT INTO archive_state (id) VALUES (true) ON CONFLICT (id) DO NOTHING;
