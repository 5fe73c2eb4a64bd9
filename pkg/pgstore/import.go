package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/pkg/event"
)

// Imports: history loaded into the archive from outside Elasticsearch (archiver import). Each
// source has a row in archive_imports whose position moves in the same transaction as the rows
// it covers, like the feed's checkpoints.

// ImportRecord is the progress of one import source.
type ImportRecord struct {
	Source       string
	Position     int64 // records committed
	Total        int64 // records the source held when the import started
	RowsInserted int64
	RowsExisting int64 // (id, day) already archived: skipped
	NewestDay    time.Time
	StartedAt    time.Time
	FinishedAt   time.Time // zero: not finished
}

// Import returns the progress of source; ok is false when it was never started.
func (s *Store) Import(ctx context.Context, source string) (rec ImportRecord, ok bool, err error) {
	var newest, finished *time.Time
	err = s.pool.QueryRow(ctx, `SELECT source, position, total, rows_inserted, rows_existing, newest_day, started_at, finished_at
		FROM archive_imports WHERE source = $1`, source).Scan(&rec.Source, &rec.Position, &rec.Total, &rec.RowsInserted,
		&rec.RowsExisting, &newest, &rec.StartedAt, &finished)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, wrap("import state", err)
	}
	if newest != nil {
		rec.NewestDay = newest.UTC()
	}
	if finished != nil {
		rec.FinishedAt = finished.UTC()
	}
	rec.StartedAt = rec.StartedAt.UTC()
	return rec, true, nil
}

// StartImport records source (holding total records) unless it is recorded already, and returns
// its progress.
func (s *Store) StartImport(ctx context.Context, source string, total int64) (ImportRecord, error) {
	if _, err := s.pool.Exec(ctx, `INSERT INTO archive_imports (source, total) VALUES ($1, $2) ON CONFLICT (source) DO NOTHING`,
		source, total); err != nil {
		return ImportRecord{}, wrap("start import", err)
	}
	rec, _, err := s.Import(ctx, source)
	return rec, err
}

// ErrImportMoved means an import's position is not where a batch started: another process is
// importing the same source. Nothing of the batch was written.
var ErrImportMoved = errors.New("import position moved: another process imports this source")

// ImportBatch writes the rows of the source's records [from, to) and moves its position to to,
// in one transaction; (id, day) pairs already archived are skipped and counted. The rows' day
// partitions are created first.
func (s *Store) ImportBatch(ctx context.Context, source string, from, to int64, rows []event.Event) (Result, error) {
	if err := s.EnsurePartitions(ctx, rowTimes(rows)...); err != nil {
		return Result{}, fmt.Errorf("import batch: %w", err)
	}
	var newest *time.Time
	for _, r := range rows {
		if d := Day(r.Timestamp); newest == nil || d.After(*newest) {
			newest = &d
		}
	}
	var res Result
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var pos int64
		if err := tx.QueryRow(ctx, `SELECT position FROM archive_imports WHERE source = $1 FOR UPDATE`, source).Scan(&pos); err != nil {
			return fmt.Errorf("lock import: %w", err)
		}
		if pos != from {
			return fmt.Errorf("%w (at %d, batch starts at %d)", ErrImportMoved, pos, from)
		}
		var err error
		if res, err = copyRows(ctx, tx, rows); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE archive_imports SET position = $2, rows_inserted = rows_inserted + $3,
				rows_existing = rows_existing + $4, newest_day = greatest(newest_day, $5), updated_at = now()
			WHERE source = $1`, source, to, res.Inserted, int64(len(rows))-res.Inserted, newest); err != nil {
			return fmt.Errorf("move import position: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE archive_state SET rows_imported = rows_imported + $1`, res.Inserted)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrImportMoved) {
			return Result{}, err
		}
		s.forgetOnMissing(err)
		return Result{}, wrap("import batch", err)
	}
	return res, nil
}

// FinishImport marks the source's import finished (verified and readable).
func (s *Store) FinishImport(ctx context.Context, source string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE archive_imports SET finished_at = now(), updated_at = now() WHERE source = $1`, source); err != nil {
		return wrap("finish import", err)
	}
	return nil
}

// CountIdentities counts, among the ids given, those archived on day's UTC day, and sums their
// id digests (event.IDHash): a verification of the (id, day) pairs an import wrote.
func (s *Store) CountIdentities(ctx context.Context, day time.Time, ids []string) (n, hash int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(`+event.IDHashSQL+`), 0)::bigint FROM events_all
		WHERE ts >= $1 AND ts < $2 AND id = ANY($3::text[])`, Day(day), Day(day).Add(24*time.Hour), ids).Scan(&n, &hash)
	if err != nil {
		return 0, 0, wrap("count identities", err)
	}
	return n, hash, nil
}

// ColumnMap names the source table's columns for an event's fields. Type and Payload may be
// empty: the events get none.
type ColumnMap struct {
	ID, ClientID, Type, Timestamp, Payload string
}

// DefaultColumns is the mapping of a table shaped like the archive's own.
var DefaultColumns = ColumnMap{ID: "id", ClientID: "client_id", Type: "type", Timestamp: "ts", Payload: "payload"}

// ParseColumnMap reads "id=event_id,clientId=client,timestamp=created_at,payload=data,type=" over
// DefaultColumns (an empty value leaves a field out).
func ParseColumnMap(s string) (ColumnMap, error) {
	m := DefaultColumns
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return m, fmt.Errorf("%q is not field=column", kv)
		}
		switch k {
		case "id":
			m.ID = v
		case "clientId":
			m.ClientID = v
		case "type":
			m.Type = v
		case "timestamp":
			m.Timestamp = v
		case "payload":
			m.Payload = v
		default:
			return m, fmt.Errorf("unknown field %q (id, clientId, type, timestamp, payload)", k)
		}
	}
	if m.ClientID == "" || m.Timestamp == "" {
		return m, errors.New("clientId and timestamp need a column")
	}
	return m, nil
}

// TableSource reads a PostgreSQL table of events for an import: every row, ordered by
// (timestamp, id), as the JSON event object a client would post. It connects with its own
// single connection (the table may live in another database), with the session time zone UTC,
// so a timestamp without time zone is read as UTC.
type TableSource struct {
	pool  *pgxpool.Pool
	table pgx.Identifier
	cols  ColumnMap
	name  string
}

// OpenTableSource connects to url and checks that table (schema.table or table) has the mapped
// columns.
func OpenTableSource(ctx context.Context, url, table string, cols ColumnMap) (*TableSource, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errors.New("import source: cannot parse the URL (value redacted)")
	}
	pc.MaxConns = 2
	pc.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pc.ConnConfig.RuntimeParams["application_name"] = "spillway-archiver-import"
	pc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("import source: %w", err)
	}
	ident := pgx.Identifier(strings.Split(table, "."))
	if len(ident) > 2 {
		pool.Close()
		return nil, fmt.Errorf("import source: %q is not table or schema.table", table)
	}
	ts := &TableSource{pool: pool, table: ident, cols: cols,
		name: fmt.Sprintf("table:%s(id=%s,clientId=%s,type=%s,timestamp=%s,payload=%s)", table, cols.ID, cols.ClientID, cols.Type, cols.Timestamp, cols.Payload)}
	rows, err := pool.Query(ctx, "SELECT "+ts.selectList()+" FROM "+ident.Sanitize()+" LIMIT 0")
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		pool.Close()
		return nil, wrap("import source "+table, err)
	}
	return ts, nil
}

// Name identifies the source for resuming: the table and the mapping.
func (t *TableSource) Name() string { return t.name }

// Close closes the connection.
func (t *TableSource) Close() { t.pool.Close() }

func (t *TableSource) col(name, cast string) string {
	if name == "" {
		return "NULL::" + cast
	}
	return pgx.Identifier{name}.Sanitize() + "::" + cast
}

func (t *TableSource) selectList() string {
	return strings.Join([]string{t.col(t.cols.ID, "text"), t.col(t.cols.ClientID, "text"), t.col(t.cols.Type, "text"),
		t.col(t.cols.Timestamp, "timestamptz"), t.col(t.cols.Payload, "text")}, ", ")
}

// Count returns the table's rows.
func (t *TableSource) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := t.pool.QueryRow(ctx, "SELECT count(*) FROM "+t.table.Sanitize()).Scan(&n); err != nil {
		return 0, wrap("count import source", err)
	}
	return n, nil
}

// Each calls fn with every row from the skip-th on (0-based, in (timestamp, id) order), as the
// JSON object of an event; a row without an id gets none (hasID false), a NULL column is left
// out, a payload that is not JSON is passed as a JSON string (validation then names it).
func (t *TableSource) Each(ctx context.Context, skip int64, fn func(pos int64, line []byte, hasID bool) error) error {
	order := t.col(t.cols.Timestamp, "timestamptz") + ", " + t.col(t.cols.ID, "text")
	rows, err := t.pool.Query(ctx, "SELECT "+t.selectList()+" FROM "+t.table.Sanitize()+" ORDER BY "+order+" OFFSET $1", skip)
	if err != nil {
		return wrap("read import source", err)
	}
	defer rows.Close()
	pos := skip
	for rows.Next() {
		var id, client, typ, payload *string
		var ts *time.Time
		if err := rows.Scan(&id, &client, &typ, &ts, &payload); err != nil {
			return wrap("read import source", err)
		}
		obj := map[string]any{}
		if id != nil {
			obj["id"] = *id
		}
		if client != nil {
			obj["clientId"] = *client
		}
		if typ != nil {
			obj["type"] = *typ
		}
		if ts != nil {
			obj["timestamp"] = ts.UTC().Format(time.RFC3339Nano)
		}
		if payload != nil {
			if json.Valid([]byte(*payload)) {
				obj["payload"] = json.RawMessage(*payload)
			} else {
				obj["payload"] = *payload // a string: refused by validation as "must be an object"
			}
		}
		line, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("import source row %d: %w", pos, err)
		}
		if err := fn(pos, line, id != nil); err != nil {
			return err
		}
		pos++
	}
	if err := rows.Err(); err != nil {
		return wrap("read import source", err)
	}
	return nil
}
