package pgstore

import "github.com/jackc/pgx/v5/pgxpool"

// CountRangesQuery exposes CountRanges' statement to the plan test.
var CountRangesQuery = countRangesQuery

// Pool exposes the pool to this package's tests, for SQL behind the store's back.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
