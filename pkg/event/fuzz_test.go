package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode checks the decoder's promises on arbitrary bodies: it never panics; what it accepts
// is valid JSON (by encoding/json's independent judgement), within every limit, compact, free of
// duplicate keys, NUL and invalid UTF-8; what it refuses is a 400 or 413 with bounded details.
// Seeds live in testdata/fuzz/FuzzDecode; `go test` runs them, `go test -fuzz FuzzDecode` explores.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"clientId":"c"}`,
		`[{"clientId":"a","id":"x","type":"t","timestamp":"2026-03-04T12:00:00Z","payload":{"a":[1,{"b":null}]}}]`,
		`{"clientId":"c","payload":{"a":1,"\u0061":2}}`,
		`{"clientId":"c","payload":{"s":"\ud83d\ude00\ud800"}}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("{\"clientId\":\"a\"}\n\n{\"clientId\":\"b\",\"payload\":{\"n\":1e400}}\n"), true)
	lim := testLim
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		format := FormatJSON
		if ndjson {
			format = FormatNDJSON
		}
		evs, err := Decode(body, format, testNow, lim)
		if err != nil {
			if evs != nil {
				t.Fatal("events returned with an error")
			}
			var ve *ValidationError
			switch {
			case errors.As(err, &ve):
				if len(ve.Details) == 0 || len(ve.Details) > MaxDetails || ve.Message == "" {
					t.Fatalf("validation error %+v", ve)
				}
				for _, d := range ve.Details {
					if d.Index < -1 || d.Index >= lim.MaxEvents || d.Message == "" || !utf8.ValidString(d.Field) || !utf8.ValidString(d.Message) {
						t.Fatalf("detail %+v", d)
					}
				}
			case errors.Is(err, ErrTooLarge):
			default:
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(evs) == 0 || len(evs) > lim.MaxEvents {
			t.Fatalf("%d events", len(evs))
		}
		if format == FormatJSON && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		for _, e := range evs {
			if !ValidID(e.ID) || clientIDProblem(e.ClientID) != "" || typeProblem(e.Type) != "" {
				t.Fatalf("invalid fields accepted: %+v", e)
			}
			if e.Timestamp.Location() != time0.Location() || !e.Timestamp.Equal(Truncate(e.Timestamp)) ||
				e.Timestamp.After(time0.Add(lim.MaxFutureSkew)) || e.Timestamp.Before(time0.Add(-lim.MaxPastAge)) {
				t.Fatalf("timestamp %v accepted", e.Timestamp)
			}
			if e.Payload == nil {
				continue
			}
			checkPayload(t, e.Payload, lim)
		}
	})
}

var time0 = Truncate(testNow)

func checkPayload(t *testing.T, p []byte, lim Limits) {
	t.Helper()
	if len(p) > lim.MaxPayloadBytes || p[0] != '{' || !json.Valid(p) || !utf8.Valid(p) {
		t.Fatalf("payload %q accepted", p)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, p); err != nil || !bytes.Equal(compact.Bytes(), p) {
		t.Fatalf("payload %q not compact", p)
	}
	// Walk it with encoding/json's tokenizer: no duplicate keys, no NUL, limits on depth and keys.
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	type frame struct {
		keys    map[string]bool
		inObj   bool
		wantKey bool
	}
	var stack []frame
	keys := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("payload %q: %v", p, err)
		}
		top := func() *frame { return &stack[len(stack)-1] }
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				if len(stack) > 0 && top().inObj {
					top().wantKey = true
				}
				stack = append(stack, frame{keys: map[string]bool{}, inObj: v == '{', wantKey: v == '{'})
				if len(stack) > lim.MaxPayloadDepth {
					t.Fatalf("payload %q deeper than %d", p, lim.MaxPayloadDepth)
				}
			} else {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && top().inObj {
					top().wantKey = true
				}
			}
			continue
		case string:
			if strings.ContainsRune(v, 0) || !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) && !strings.Contains(string(p), "\uFFFD") && !strings.Contains(strings.ToLower(string(p)), `\ufffd`) {
				t.Fatalf("payload %q holds a bad string %q", p, v)
			}
			if top().inObj && top().wantKey {
				if top().keys[v] {
					t.Fatalf("payload %q has duplicate key %q", p, v)
				}
				top().keys[v] = true
				keys++
				top().wantKey = false
				continue
			}
		case json.Number:
			if numberProblem(string(v)) != "" {
				t.Fatalf("payload %q holds number %s", p, v)
			}
		}
		if len(stack) > 0 && top().inObj {
			top().wantKey = true
		}
	}
	if keys > lim.MaxPayloadKeys {
		t.Fatalf("payload %q has %d keys", p, keys)
	}
}
