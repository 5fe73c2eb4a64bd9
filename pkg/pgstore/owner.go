package pgstore

import (
	"context"
	"errors"
	"fmt"
)

// ErrOtherPrefix means the schema archives another Elasticsearch index prefix.
var ErrOtherPrefix = errors.New("the schema archives another index prefix")

// OtherPrefixError names both prefixes and the schema. It matches ErrOtherPrefix.
type OtherPrefixError struct {
	Schema, Owner, Prefix string
}

// Error says what to change.
func (e *OtherPrefixError) Error() string {
	return fmt.Sprintf("postgres.schema %q archives index prefix %q, not %q: give each index prefix its own postgres.schema",
		e.Schema, e.Owner, e.Prefix)
}

// Is makes the error match ErrOtherPrefix.
func (e *OtherPrefixError) Is(target error) bool { return target == ErrOtherPrefix }

// ClaimPrefix records that this schema archives the index prefix, or checks that it does: one
// schema archives one prefix (mappings/postgres/005_archive_owner.sql). It fails with an
// *OtherPrefixError when the schema belongs to another prefix. Concurrent claims are safe: the
// first one wins and the others compare against it.
func (s *Store) ClaimPrefix(ctx context.Context, prefix string) error {
	// Two statements: the SELECT's snapshot must be taken after a concurrent claim committed.
	if _, err := s.pool.Exec(ctx, `INSERT INTO archive_owner (id, index_prefix) VALUES (true, $1) ON CONFLICT (id) DO NOTHING`, prefix); err != nil {
		return wrap("claim index prefix", err)
	}
	var owner string
	if err := s.pool.QueryRow(ctx, `SELECT index_prefix FROM archive_owner`).Scan(&owner); err != nil {
		return wrap("claim index prefix", err)
	}
	if owner != prefix {
		return &OtherPrefixError{Schema: s.cfg.Schema, Owner: owner, Prefix: prefix}
	}
	return nil
}
