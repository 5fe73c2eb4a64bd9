package testenv

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RawCopy COPYs rows straight into a table, one COPY statement, rows pulled from next until it
// returns false: the baseline that benchmarks compare PostgreSQL write paths against.
func RawCopy(ctx context.Context, pool *pgxpool.Pool, table string, columns []string, next func() ([]any, bool)) (int64, error) {
	return pool.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromFunc(func() ([]any, error) {
		row, ok := next()
		if !ok {
			return nil, nil
		}
		return row, nil
	}))
}
