package search

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

var testBinding = binding{clientIDs: []string{"b", "a"}, types: []string{"t"}, from: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), desc: true}

func TestCursorRoundTrip(t *testing.T) {
	s, _ := newSigner("k")
	for _, key := range []event.Position{
		{Timestamp: time.Unix(0, 0).UTC(), ID: "x"},
		{Timestamp: time.Unix(0, 1767225600000001000).UTC(), ID: "0190a5e3-7b1c-7def-8000-000000000000"},
		{Timestamp: time.Unix(0, 1<<63-1).UTC(), ID: string(make([]byte, maxIDBytes))},
	} {
		c := s.encodeCursor(testBinding, key)
		got, err := s.decodeCursor(testBinding, c)
		if err != nil || got != key {
			t.Fatalf("%+v: got %+v %v", key, got, err)
		}
		// Same query, other spelling: order and duplicates of the sets do not matter.
		same := binding{clientIDs: []string{"a", "b", "a"}, types: []string{"t"}, from: testBinding.from.In(time.FixedZone("x", 3600)), desc: true}
		if _, err := s.decodeCursor(same, c); err != nil {
			t.Fatalf("equivalent binding: %v", err)
		}
		for name, other := range map[string]binding{
			"asc":    {clientIDs: []string{"a", "b"}, types: []string{"t"}, from: testBinding.from},
			"client": {clientIDs: []string{"a"}, types: []string{"t"}, from: testBinding.from, desc: true},
			"type":   {clientIDs: []string{"a", "b"}, from: testBinding.from, desc: true},
			"from":   {clientIDs: []string{"a", "b"}, types: []string{"t"}, from: testBinding.from.Add(time.Nanosecond), desc: true},
			"to":     {clientIDs: []string{"a", "b"}, types: []string{"t"}, from: testBinding.from, to: time.Now(), desc: true},
			// Set boundaries are length-prefixed: {"ab"} is not {"a","b"}.
			"joined": {clientIDs: []string{"ab"}, types: []string{"t"}, from: testBinding.from, desc: true},
		} {
			if _, err := s.decodeCursor(other, c); err == nil {
				t.Errorf("cursor accepted for another query (%s)", name)
			}
		}
		// A stream token is not a cursor, even under the same key and binding.
		if _, err := s.decodeToken(testBinding.bytes(), c); err == nil {
			t.Error("cursor accepted as a stream token")
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	s, _ := newSigner("k")
	b := binding{clientIDs: []string{"a"}}.bytes()
	tok := token{since: time.Date(2026, 1, 1, 0, 0, 0, 1000, time.UTC), pos: map[shardKey]int64{
		{"TmP3o0iGSWqbk1hXYw4VNQ", 0}:  17,
		{"TmP3o0iGSWqbk1hXYw4VNQ", 3}:  0,
		{"x-other_uuid-1234567890", 1}: 1 << 40,
	}}
	v := s.encodeToken(b, tok)
	got, err := s.decodeToken(b, v)
	if err != nil || !got.since.Equal(tok.since) || len(got.pos) != 3 {
		t.Fatalf("got %+v %v", got, err)
	}
	for k, p := range tok.pos {
		if got.pos[k] != p {
			t.Errorf("%v: %d, want %d", k, got.pos[k], p)
		}
	}
	if v2 := s.encodeToken(b, got); v2 != v {
		t.Error("encoding is not deterministic")
	}
	if _, err := s.decodeCursor(binding{clientIDs: []string{"a"}}, v); err == nil {
		t.Error("token accepted as a cursor")
	}
	if _, err := s.decodeToken(binding{clientIDs: []string{"b"}}.bytes(), v); err == nil {
		t.Error("token accepted for another client")
	}
	// A fresh subscription's token stays short: it travels in every SSE id.
	if n := len(s.encodeToken(b, token{since: time.Now(), pos: map[shardKey]int64{{"TmP3o0iGSWqbk1hXYw4VNQ", 0}: 123456}})); n > 80 {
		t.Errorf("one-shard token is %d characters", n)
	}
}

// FuzzCursor feeds arbitrary strings to the cursor and token decoders: they must refuse
// without panicking, and whatever they accept must re-encode to the same value (only values
// this process signed can be accepted).
func FuzzCursor(f *testing.F) {
	s, _ := newSigner("fuzz-key")
	f.Add(s.encodeCursor(testBinding, event.Position{Timestamp: time.Unix(0, 1767225600000001000).UTC(), ID: "id-1"}))
	f.Add(s.encodeToken(testBinding.bytes(), token{since: time.Unix(1767225600, 0), pos: map[shardKey]int64{{"u", 0}: 5}}))
	f.Add("")
	f.Add("AAAA")
	f.Add(base64.RawURLEncoding.EncodeToString(make([]byte, 17)))
	f.Fuzz(func(t *testing.T, v string) {
		if key, err := s.decodeCursor(testBinding, v); err == nil {
			if again := s.encodeCursor(testBinding, key); again != v {
				t.Fatalf("accepted %q, which re-encodes as %q", v, again)
			}
		}
		if tok, err := s.decodeToken(testBinding.bytes(), v); err == nil {
			if again := s.encodeToken(testBinding.bytes(), tok); again != v {
				t.Fatalf("accepted token %q, which re-encodes as %q", v, again)
			}
		}
		// With the MAC out of the way, the payload parsers themselves must not panic either.
		raw, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			raw = []byte(v)
		}
		forged := s.seal(domainCursor, testBinding.bytes(), raw)
		if key, err := s.decodeCursor(testBinding, forged); err == nil && (key.Timestamp.Before(time.Unix(0, 0)) || key.ID == "") {
			t.Fatalf("decoded an invalid key %+v", key)
		}
		forged = s.seal(domainStream, testBinding.bytes(), raw)
		if tok, err := s.decodeToken(testBinding.bytes(), forged); err == nil && len(tok.pos) > maxTokenPos {
			t.Fatalf("decoded %d positions", len(tok.pos))
		}
	})
}
