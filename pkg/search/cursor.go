package search

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"slices"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/spillway/spillway/pkg/event"
)

// Cursors and stream tokens are opaque to clients: base64url (no padding) of a compact binary
// payload followed by a truncated HMAC-SHA256. The MAC also covers the query the value belongs
// to, so a cursor replayed with other clientIds, types, times or order — or edited in any way —
// is refused instead of silently skipping or repeating events. Nothing is kept on the server:
// any replica that shares the key (search.cursor_key) can continue any pagination or stream.

const (
	macLen = 16 // 128-bit tag: forging one is out of reach; the full 256 bits would only lengthen URLs

	domainCursor byte = 'c'
	domainStream byte = 's'

	cursorVersion byte = 1
	tokenVersion  byte = 1

	maxCursorLen = 1024  // a cursor holds one sort key: an id of at most 512 bytes and a time
	maxTokenLen  = 16384 // a stream token holds one position per shard delivered from
	maxTokenPos  = 4096
	maxIDBytes   = 512 // Elasticsearch's limit on _id
)

var errBadCursor = errors.New("malformed, tampered with, or issued for other parameters")

// signer seals and opens cursors and tokens. It is safe for concurrent use (read-only).
type signer struct{ key []byte }

// newSigner uses key, or 32 random bytes when key is empty; random reports the latter.
func newSigner(key string) (s *signer, random bool) {
	if key != "" {
		return &signer{key: []byte(key)}, false
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return &signer{key: b}, true
}

func (s *signer) mac(domain byte, binding, payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = domain
	n := binary.PutUvarint(hdr[1:], uint64(len(binding)))
	m.Write(hdr[:1+n])
	m.Write(binding)
	m.Write(payload)
	return m.Sum(nil)[:macLen]
}

func (s *signer) seal(domain byte, binding, payload []byte) string {
	return base64.RawURLEncoding.EncodeToString(append(slices.Clip(payload), s.mac(domain, binding, payload)...))
}

// open verifies v and returns its payload.
func (s *signer) open(domain byte, binding []byte, v string, maxLen int) ([]byte, error) {
	if len(v) == 0 || len(v) > maxLen {
		return nil, errBadCursor
	}
	// Strict: a lenient decoder ignores the unused low bits of the last character, so several
	// strings would decode to one valid cursor and an edited cursor could still be accepted.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil || len(raw) <= macLen {
		return nil, errBadCursor
	}
	payload, tag := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	if !hmac.Equal(tag, s.mac(domain, binding, payload)) {
		return nil, errBadCursor
	}
	return payload, nil
}

// binding is the canonical form of the parameters a cursor or token belongs to: sets are
// sorted and deduplicated, times compared as instants.
type binding struct {
	clientIDs []string
	types     []string
	from, to  time.Time
	desc      bool
}

func (b binding) bytes() []byte {
	out := make([]byte, 0, 64)
	putSet := func(vals []string) {
		v := slices.Clone(vals)
		sort.Strings(v)
		v = slices.Compact(v)
		out = binary.AppendUvarint(out, uint64(len(v)))
		for _, s := range v {
			out = binary.AppendUvarint(out, uint64(len(s)))
			out = append(out, s...)
		}
	}
	putTime := func(t time.Time) {
		if t.IsZero() {
			out = append(out, 0)
			return
		}
		out = append(out, 1)
		out = binary.AppendVarint(out, t.Unix())
		out = binary.AppendUvarint(out, uint64(t.Nanosecond()))
	}
	putSet(b.clientIDs)
	putSet(b.types)
	putTime(b.from)
	putTime(b.to)
	if b.desc {
		out = append(out, 1)
	} else {
		out = append(out, 0)
	}
	return out
}

// encodeCursor returns the cursor continuing after key for the query b. The timestamp travels
// as epoch nanoseconds (microseconds in practice: both stores keep that precision).
func (s *signer) encodeCursor(b binding, key event.Position) string {
	p := make([]byte, 0, 16+len(key.ID))
	p = append(p, cursorVersion)
	p = binary.AppendVarint(p, key.Timestamp.UnixNano())
	p = append(p, key.ID...)
	return s.seal(domainCursor, b.bytes(), p)
}

// decodeCursor verifies a cursor against the query b and returns its position.
func (s *signer) decodeCursor(b binding, v string) (event.Position, error) {
	p, err := s.open(domainCursor, b.bytes(), v, maxCursorLen)
	if err != nil {
		return event.Position{}, err
	}
	if len(p) < 2 || p[0] != cursorVersion {
		return event.Position{}, errBadCursor
	}
	nanos, n := binary.Varint(p[1:])
	if n <= 0 {
		return event.Position{}, errBadCursor
	}
	id := string(p[1+n:])
	if nanos < 0 || len(id) == 0 || len(id) > maxIDBytes || !utf8.ValidString(id) {
		return event.Position{}, errBadCursor
	}
	return event.Position{Timestamp: time.Unix(0, nanos).UTC(), ID: id}, nil
}

// shardKey names one shard of one index incarnation: an index deleted and recreated under
// the same name gets a new UUID, so positions never carry over to it.
type shardKey struct {
	uuid  string
	shard int
}

// token is a live stream's resume point: the subscription time (events ingested earlier are
// not streamed) and, for each shard the stream has delivered from, the _seq_no of the last
// event delivered (or the checkpoint up to which the shard was read since).
type token struct {
	since time.Time // microsecond precision, like ingestedAt
	pos   map[shardKey]int64
}

func (t token) clone() token {
	c := token{since: t.since, pos: make(map[shardKey]int64, len(t.pos))}
	for k, v := range t.pos {
		c.pos[k] = v
	}
	return c
}

func (s *signer) encodeToken(bind []byte, t token) string {
	keys := make([]shardKey, 0, len(t.pos))
	for k := range t.pos {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].uuid != keys[j].uuid {
			return keys[i].uuid < keys[j].uuid
		}
		return keys[i].shard < keys[j].shard
	})
	p := make([]byte, 0, 16+len(keys)*32)
	p = append(p, tokenVersion)
	p = binary.AppendVarint(p, t.since.UnixMicro())
	p = binary.AppendUvarint(p, uint64(len(keys)))
	for _, k := range keys {
		p = binary.AppendUvarint(p, uint64(len(k.uuid)))
		p = append(p, k.uuid...)
		p = binary.AppendUvarint(p, uint64(k.shard))
		p = binary.AppendUvarint(p, uint64(t.pos[k]))
	}
	return s.seal(domainStream, bind, p)
}

func (s *signer) decodeToken(bind []byte, v string) (token, error) {
	p, err := s.open(domainStream, bind, v, maxTokenLen)
	if err != nil {
		return token{}, err
	}
	if len(p) < 1 || p[0] != tokenVersion {
		return token{}, errBadCursor
	}
	r := reader{b: p[1:]}
	micros := r.varint()
	n := r.uvarint()
	if r.bad || n > maxTokenPos {
		return token{}, errBadCursor
	}
	t := token{since: time.UnixMicro(micros).UTC(), pos: make(map[shardKey]int64, n)}
	for i := uint64(0); i < n; i++ {
		l := r.uvarint()
		if r.bad || l == 0 || l > 64 || l > uint64(len(r.b)) {
			return token{}, errBadCursor
		}
		uuid := string(r.b[:l])
		r.b = r.b[l:]
		shard, seq := r.uvarint(), r.uvarint()
		if r.bad || shard > 1<<20 || seq > 1<<62 {
			return token{}, errBadCursor
		}
		t.pos[shardKey{uuid: uuid, shard: int(shard)}] = int64(seq)
	}
	if len(r.b) != 0 || len(t.pos) != int(n) {
		return token{}, errBadCursor
	}
	return t, nil
}

// reader decodes varints, remembering the first failure.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}
