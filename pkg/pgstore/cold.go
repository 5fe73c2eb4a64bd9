package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/pkg/event"
)

// The cold tier: search's reads of archived events, in exactly Elasticsearch's order. Ids are
// COLLATE "C" (byte order, like keyword sort values) and timestamps microseconds in both
// stores, so a (timestamp, id) position taken from one store means the same place in the other.

// maxColdPage bounds one page (the API's largest page plus its probe, with room).
const maxColdPage = 20000

// where builds the conditions on e shared by pages and counts, appending their arguments. The
// SQL text only varies with which conditions are present; every value is a parameter. Absent
// conditions are left out rather than written as "$n IS NULL OR ...", which a cached generic
// plan could not turn into index bounds.
func where(f event.Filter, args []any, clientCol string) ([]string, []any) {
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var conds []string
	if clientCol != "" {
		conds = append(conds, "e.client_id = "+clientCol)
	} else {
		conds = append(conds, "e.client_id = ANY("+arg(dedupe(f.ClientIDs))+"::text[])")
	}
	if len(f.Types) > 0 {
		conds = append(conds, "e.type = ANY("+arg(dedupe(f.Types))+"::text[])")
	}
	if !f.From.IsZero() {
		conds = append(conds, "e.ts >= "+arg(f.From.UTC())+"::timestamptz")
	}
	if !f.To.IsZero() {
		conds = append(conds, "e.ts < "+arg(f.To.UTC())+"::timestamptz")
	}
	return conds, args
}

func dedupe(v []string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}

// Page returns up to q.Size archived events matching q in (timestamp, id) order, ascending
// or descending, strictly after q.After. Each client's events are read with one range scan of
// the (client_id, ts, id) index, at most Size of them, and the per-client runs are merged, so a
// page costs O(clients × Size) rows whatever the size of the history.
func (s *Store) Page(ctx context.Context, q event.PageQuery) ([]event.Event, error) {
	if len(q.ClientIDs) == 0 || q.Size < 1 || q.Size > maxColdPage {
		return nil, fmt.Errorf("cold page: %w: clientIds and a size of 1-%d are required", event.ErrInvalid, maxColdPage)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return nil, nil
	}
	args := []any{dedupe(q.ClientIDs)}
	conds, args := where(q.Filter, args, "c.client_id")
	op, dir := ">", "ASC"
	if q.Desc {
		op, dir = "<", "DESC"
	}
	if q.After != nil {
		args = append(args, q.After.Timestamp.UTC(), q.After.ID)
		// A row comparison over consecutive index columns is one index bound.
		conds = append(conds, fmt.Sprintf(`(e.ts, e.id) %s ($%d::timestamptz, $%d::text COLLATE "C")`, op, len(args)-1, len(args)))
	}
	args = append(args, q.Size)
	limit := "$" + strconv.Itoa(len(args))
	sql := `SELECT x.id, x.client_id, x.type, x.ts, x.ingested_at, x.payload::text
		FROM unnest($1::text[]) AS c(client_id)
		CROSS JOIN LATERAL (
			SELECT e.id, e.client_id, e.type, e.ts, e.ingested_at, e.payload FROM events_all e
			WHERE ` + strings.Join(conds, " AND ") + `
			ORDER BY e.ts ` + dir + `, e.id ` + dir + ` LIMIT ` + limit + `
		) x
		ORDER BY x.ts ` + dir + `, x.id ` + dir + ` LIMIT ` + limit
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap("cold page", err)
	}
	out, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, wrap("cold page", err)
	}
	return out, nil
}

// Count returns the exact number of archived events matching f.
func (s *Store) Count(ctx context.Context, f event.Filter) (int64, error) {
	if len(f.ClientIDs) == 0 {
		return 0, fmt.Errorf("cold count: %w: clientIds are required", event.ErrInvalid)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return 0, nil
	}
	conds, args := where(f, nil, "")
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM events_all e WHERE `+strings.Join(conds, " AND "), args...).Scan(&n); err != nil {
		return 0, wrap("cold count", err)
	}
	return n, nil
}

// scanEvent reads id, client_id, type, ts, ingested_at, payload::text.
func scanEvent(row pgx.CollectableRow) (event.Event, error) {
	var e event.Event
	var typ *string
	var payload []byte
	if err := row.Scan(&e.ID, &e.ClientID, &typ, &e.Timestamp, &e.IngestedAt, &payload); err != nil {
		return e, err
	}
	if typ != nil {
		e.Type = *typ
	}
	e.Payload = payload
	e.Timestamp, e.IngestedAt = e.Timestamp.UTC(), e.IngestedAt.UTC()
	return e, nil
}
