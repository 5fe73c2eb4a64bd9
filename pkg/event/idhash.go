package event

import "crypto/md5"

// IDHash is a 24-bit digest of an event id: the first three bytes of md5(id), big-endian.
// Ingest stores it with each document (idHash) and the archive computes the same value in SQL
// (IDHashSQL), so verification can compare the sum over a time range in both stores as well as
// the count: a missing and an extra event in the same range no longer cancel out, unless their
// digests collide (1 in 16.7 million). 24 bits keep the sum of a range exact in
// Elasticsearch's double-precision sum aggregation up to 2^29 (536 million) events per range.
// md5 is used as a checksum here, not for security; PostgreSQL offers it without extensions.
func IDHash(id string) int64 {
	h := md5.Sum([]byte(id))
	return int64(h[0])<<16 | int64(h[1])<<8 | int64(h[2])
}

// IDHashSQL is IDHash in PostgreSQL, over a text column named id.
const IDHashSQL = `('x' || substr(md5(id), 1, 6))::bit(24)::int`

// IDHashSQLOf is IDHashSQL over the text column col (e.g. "v.id").
func IDHashSQLOf(col string) string { return `('x' || substr(md5(` + col + `), 1, 6))::bit(24)::int` }
