package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestNewIDIsTimeOrderedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 10000; i++ {
		id := NewID()
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		// UUIDv7 ids generated in one process sort in generation order.
		if prev != "" && id <= prev {
			t.Fatalf("id %s not after %s", id, prev)
		}
		prev = id
	}
}

func TestTruncate(t *testing.T) {
	in := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	got := Truncate(in)
	want := time.Date(2026, 1, 2, 2, 4, 5, 123456000, time.UTC)
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("Truncate = %v, want %v", got, want)
	}
	if s := got.Format(TimeFormat); s != "2026-01-02T02:04:05.123456Z" {
		t.Fatalf("format = %s", s)
	}
}

func TestValidationErrorIsInvalid(t *testing.T) {
	err := fmt.Errorf("decode: %w", &ValidationError{Details: []FieldError{{Index: 3, Field: "clientId", Message: "required"}}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatal("validation error does not match ErrInvalid")
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatal("validation error matches ErrNotFound")
	}
	if got := err.Error(); got != "decode: clientId: required" {
		t.Fatalf("Error() = %q", got)
	}
}

// A problem that is about no single event has no index on the wire (api/openapi.yaml: an index
// is never negative); reading the JSON back restores -1.
func TestFieldErrorJSONLeavesOutNegativeIndex(t *testing.T) {
	for _, tc := range []struct {
		in   FieldError
		want string
	}{
		{FieldError{Index: -1, Field: "to", Message: "must not be before from"}, `{"field":"to","message":"must not be before from"}`},
		{FieldError{Index: 0, Field: "clientId", Message: "required"}, `{"index":0,"field":"clientId","message":"required"}`},
		{FieldError{Index: 7, Message: `line 8: got "<&>"`}, `{"index":7,"field":"","message":"line 8: got \"<&>\""}`},
	} {
		// As httpx writes envelopes: without HTML escaping.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err := enc.Encode(tc.in)
		b := bytes.TrimSpace(buf.Bytes())
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", tc.in, b, err, tc.want)
		}
		var back FieldError
		if err := json.Unmarshal(b, &back); err != nil || back != tc.in {
			t.Errorf("Unmarshal(%s) = %+v, %v; want %+v", b, back, err, tc.in)
		}
	}
}

// The digest is pinned: documents already indexed carry it, so changing it would make every
// stored range disagree with PostgreSQL (whose side, IDHashSQL, is compared in pgstore's tests).
func TestIDHashIsTheFirstThreeBytesOfMD5(t *testing.T) {
	for id, want := range map[string]int64{
		"":          0xd41d8c, // md5 d41d8cd98f00b204e9800998ecf8427e
		"abc":       0x900150, // md5 900150983cd24fb0d6963f7d28e17f72
		"évènement": 0x0575b4, // md5 0575b487e57873b93f73219d3f1771b7 (UTF-8 bytes)
	} {
		if got := IDHash(id); got != want {
			t.Errorf("IDHash(%q) = %#x, want %#x", id, got, want)
		}
	}
}
