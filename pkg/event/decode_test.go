package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	testNow = time.Date(2026, 3, 4, 12, 0, 0, 123456789, time.UTC)
	testLim = Limits{MaxEvents: 5, MaxPayloadBytes: 200, MaxPayloadDepth: 4, MaxPayloadKeys: 10,
		MaxFutureSkew: 24 * time.Hour, MaxPastAge: 30 * 24 * time.Hour}
)

func TestDecodeAccepts(t *testing.T) {
	now := Truncate(testNow)
	tests := []struct {
		name   string
		format Format
		body   string
		check  func(t *testing.T, evs []Event)
	}{
		{"minimal object gets id and times", FormatJSON, `{"clientId":"c1"}`, func(t *testing.T, evs []Event) {
			e := one(t, evs)
			if e.ClientID != "c1" || !ValidID(e.ID) || len(e.ID) != 36 {
				t.Errorf("event %+v", e)
			}
			if !e.Timestamp.Equal(now) || !e.IngestedAt.Equal(now) || e.Timestamp.Location() != time.UTC {
				t.Errorf("times %v %v, want %v", e.Timestamp, e.IngestedAt, now)
			}
			if e.Payload != nil || e.Type != "" {
				t.Errorf("unexpected payload/type %+v", e)
			}
		}},
		{"all fields", FormatJSON, `{"id":"ev-1.a:b_c","clientId":"Ünïcødé 🙂","type":"click",
			"timestamp":"2026-03-04T13:00:00.123456789+02:00","payload":{"a":1}}`, func(t *testing.T, evs []Event) {
			e := one(t, evs)
			want := time.Date(2026, 3, 4, 11, 0, 0, 123456000, time.UTC)
			if e.ID != "ev-1.a:b_c" || e.ClientID != "Ünïcødé 🙂" || e.Type != "click" || !e.Timestamp.Equal(want) ||
				e.Timestamp.Location() != time.UTC || string(e.Payload) != `{"a":1}` {
				t.Errorf("event %+v", e)
			}
		}},
		{"array keeps order", FormatJSON, ` [ {"clientId":"a"}, {"clientId":"b","id":"x"} ,{"clientId":"c"} ] `, func(t *testing.T, evs []Event) {
			if len(evs) != 3 || evs[0].ClientID != "a" || evs[1].ID != "x" || evs[2].ClientID != "c" {
				t.Errorf("events %+v", evs)
			}
			if evs[0].ID >= evs[2].ID {
				t.Errorf("server ids not time-ordered: %s %s", evs[0].ID, evs[2].ID)
			}
		}},
		{"ndjson with blank lines and CRLF", FormatNDJSON, "\n{\"clientId\":\"a\"}\r\n  \n{\"clientId\":\"b\"}", func(t *testing.T, evs []Event) {
			if len(evs) != 2 || evs[0].ClientID != "a" || evs[1].ClientID != "b" {
				t.Errorf("events %+v", evs)
			}
		}},
		{"null optional fields are absent", FormatJSON, `{"clientId":"c","id":null,"type":null,"timestamp":null,"payload":null}`, func(t *testing.T, evs []Event) {
			e := one(t, evs)
			if !ValidID(e.ID) || e.Type != "" || !e.Timestamp.Equal(now) || e.Payload != nil {
				t.Errorf("event %+v", e)
			}
		}},
		{"escapes in fields are decoded", FormatJSON, `{"clientId":"a\"b\\c\u00e9\ud83d\ude00","type":"t\/x"}`, func(t *testing.T, evs []Event) {
			e := one(t, evs)
			if e.ClientID != "a\"b\\cé😀" || e.Type != "t/x" {
				t.Errorf("event %q %q", e.ClientID, e.Type)
			}
		}},
		{"payload compacted verbatim", FormatJSON, `{"clientId":"c","payload":{ "big" : 123456789012345678901234567890 , "f":1.50E+3, "s":"\u00e9<&>" , "n":[ true , false , null , -0 , 1e-400 ] }}`, func(t *testing.T, evs []Event) {
			e := one(t, evs)
			want := `{"big":123456789012345678901234567890,"f":1.50E+3,"s":"\u00e9<&>","n":[true,false,null,-0,1e-400]}`
			if string(e.Payload) != want {
				t.Errorf("payload %s\nwant    %s", e.Payload, want)
			}
		}},
		{"lower-case t and z", FormatJSON, `{"clientId":"c","timestamp":"2026-03-04t10:00:00z"}`, func(t *testing.T, evs []Event) {
			if e := one(t, evs); !e.Timestamp.Equal(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)) {
				t.Errorf("timestamp %v", e.Timestamp)
			}
		}},
		{"limits reached exactly", FormatJSON, `{"clientId":"` + strings.Repeat("x", 128) + `","id":"` + strings.Repeat("i", 128) +
			`","type":"` + strings.Repeat("t", 128) + `","payload":{"a":{"b":{"c":[1]}},"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":"` +
			strings.Repeat("v", 128) + `"}}`, func(t *testing.T, evs []Event) {
			if e := one(t, evs); len(e.Payload) != 200 {
				t.Errorf("payload is %d bytes, want exactly the limit", len(e.Payload))
			}
		}},
		{"largest float64", FormatJSON, `{"clientId":"c","payload":{"x":-1.7976931348623157e308}}`, func(t *testing.T, evs []Event) { one(t, evs) }},
		{"timestamp at both bounds", FormatJSON, `[{"clientId":"c","timestamp":"2026-03-05T12:00:00.123456Z"},{"clientId":"c","timestamp":"2026-02-02T12:00:00.123456Z"}]`, func(t *testing.T, evs []Event) {
			if len(evs) != 2 {
				t.Fatalf("%d events", len(evs))
			}
		}},
		{"max events", FormatNDJSON, strings.Repeat(`{"clientId":"c"}`+"\n", 5), func(t *testing.T, evs []Event) {
			if len(evs) != 5 {
				t.Errorf("%d events", len(evs))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := Decode([]byte(tc.body), tc.format, testNow, testLim)
			if err != nil {
				t.Fatalf("Decode: %v (%+v)", err, details(err))
			}
			for _, e := range evs {
				if e.Payload != nil && !json.Valid(e.Payload) {
					t.Errorf("payload not valid JSON: %s", e.Payload)
				}
			}
			tc.check(t, evs)
		})
	}
}

func one(t *testing.T, evs []Event) Event {
	t.Helper()
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	return evs[0]
}

func details(err error) []FieldError {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Details
	}
	return nil
}

func TestDecodeRejects(t *testing.T) {
	ev := func(fields string) string { return `{"clientId":"c"` + fields + `}` }
	pl := func(payload string) string { return ev(`,"payload":` + payload) }
	type want struct {
		index int
		field string
		msg   string // substring of the message
	}
	tests := []struct {
		name   string
		format Format
		body   string
		want   []want
	}{
		{"empty body", FormatJSON, "  \n", []want{{-1, "", "required"}}},
		{"empty array", FormatJSON, "[]", []want{{-1, "", "at least one event"}}},
		{"empty ndjson", FormatNDJSON, "\n\n", []want{{-1, "", "at least one event"}}},
		{"not JSON", FormatJSON, "hello", []want{{-1, "", "invalid JSON at byte 0"}}},
		{"truncated", FormatJSON, `{"clientId":"c"`, []want{{0, "", "unexpected end of input"}}},
		{"trailing data", FormatJSON, `{"clientId":"c"} {"clientId":"d"}`, []want{{-1, "", "after the JSON value"}}},
		{"top-level string", FormatJSON, `"x"`, []want{{-1, "", "expected a JSON object or array"}}},
		{"raw control char in string", FormatJSON, "{\"clientId\":\"a\tb\"}", []want{{0, "", "control character"}}},
		{"bad escape", FormatJSON, `{"clientId":"a\qb"}`, []want{{0, "", "invalid escape"}}},
		{"leading zero", FormatJSON, pl(`{"a":01}`), []want{{0, "", "expected ',' or '}'"}}},
		{"trailing comma", FormatJSON, `[{"clientId":"c"},]`, []want{{1, "", "expected a JSON value"}}},
		{"array element not an object", FormatJSON, `[{"clientId":"c"},42,{"clientId":"d"}]`, []want{{1, "", "must be a JSON object"}}},
		{"ndjson array line", FormatNDJSON, "{\"clientId\":\"c\"}\n[1]\n", []want{{1, "", "line 2: must be a JSON object"}}},
		{"ndjson two objects on a line", FormatNDJSON, `{"clientId":"c"} {"clientId":"c"}`, []want{{0, "", "one event per line"}}},
		{"ndjson bad line does not hide others", FormatNDJSON, "{\"clientId\":1}\n\n{oops\n{\"clientId\":\"c\",\"id\":\"a b\"}\n", []want{
			{0, "clientId", "must be a string"}, {1, "", "line 3: invalid JSON"}, {2, "id", "A-Z a-z 0-9"}}},

		{"missing clientId", FormatJSON, `{"type":"x"}`, []want{{0, "clientId", "required"}}},
		{"null clientId", FormatJSON, `{"clientId":null}`, []want{{0, "clientId", "required"}}},
		{"empty clientId", FormatJSON, `{"clientId":""}`, []want{{0, "clientId", "must not be empty"}}},
		{"long clientId", FormatJSON, `{"clientId":"` + strings.Repeat("é", 65) + `"}`, []want{{0, "clientId", "at most 128 bytes, got 130"}}},
		{"control char clientId", FormatJSON, `{"clientId":"a\u0007"}`, []want{{0, "clientId", "control characters"}}},
		{"C1 control clientId", FormatJSON, `{"clientId":"a\u0085"}`, []want{{0, "clientId", "control characters"}}},
		{"NUL clientId", FormatJSON, `{"clientId":"a\u0000"}`, []want{{0, "clientId", `\u0000`}}},
		{"invalid UTF-8 clientId", FormatJSON, "{\"clientId\":\"a\xff\"}", []want{{0, "clientId", "invalid UTF-8"}}},
		{"numeric clientId", FormatJSON, `{"clientId":7}`, []want{{0, "clientId", "must be a string"}}},
		{"empty id", FormatJSON, ev(`,"id":""`), []want{{0, "id", "1-128 characters"}}},
		{"id with space", FormatJSON, ev(`,"id":"a b"`), []want{{0, "id", "1-128 characters"}}},
		{"id too long", FormatJSON, ev(`,"id":"` + strings.Repeat("a", 129) + `"`), []want{{0, "id", "1-128 characters"}}},
		{"non-ASCII id", FormatJSON, ev(`,"id":"é"`), []want{{0, "id", "1-128 characters"}}},
		{"type too long", FormatJSON, ev(`,"type":"` + strings.Repeat("t", 129) + `"`), []want{{0, "type", "at most 128 bytes"}}},
		{"type with newline", FormatJSON, ev(`,"type":"a\nb"`), []want{{0, "type", "control characters"}}},
		{"timestamp not RFC 3339", FormatJSON, ev(`,"timestamp":"2026-03-04 10:00:00"`), []want{{0, "timestamp", "RFC 3339"}}},
		{"timestamp without zone", FormatJSON, ev(`,"timestamp":"2026-03-04T10:00:00"`), []want{{0, "timestamp", "RFC 3339"}}},
		{"timestamp number", FormatJSON, ev(`,"timestamp":1772618400`), []want{{0, "timestamp", "must be a string"}}},
		{"timestamp bad offset", FormatJSON, ev(`,"timestamp":"2026-03-04T10:00:00+24:00"`), []want{{0, "timestamp", "offset"}}},
		{"timestamp too far ahead", FormatJSON, ev(`,"timestamp":"2026-03-05T12:00:01Z"`), []want{{0, "timestamp", "more than 24h in the future"}}},
		{"timestamp too old", FormatJSON, ev(`,"timestamp":"2026-02-02T11:59:59Z"`), []want{{0, "timestamp", "more than 720h in the past"}}},
		{"unknown field", FormatJSON, ev(`,"clientID":"typo"`), []want{{0, "clientID", "unknown field"}}},
		{"duplicate field", FormatJSON, ev(`,"clientId":"d"`), []want{{0, "clientId", "duplicate key"}}},

		{"payload array", FormatJSON, pl(`[1]`), []want{{0, "payload", "must be a JSON object"}}},
		{"payload string", FormatJSON, pl(`"x"`), []want{{0, "payload", "must be a JSON object"}}},
		{"payload too big", FormatJSON, pl(`{"a":"` + strings.Repeat("x", 195) + `"}`), []want{{0, "payload", "is 203 bytes serialized, more than 200"}}},
		{"payload too deep objects", FormatJSON, pl(`{"a":{"b":{"c":{"d":{"e":1}}}}}`), []want{{0, "payload", "deeper than 4 levels at payload.a.b.c.d"}}},
		{"payload too deep arrays", FormatJSON, pl(`{"a":[[[[1]]]]}`), []want{{0, "payload", "deeper than 4 levels at payload.a[0][0][0]"}}},
		{"payload too many keys", FormatJSON, pl(`{"a":{"b":1,"c":2},"d":[{"e":1,"f":2,"g":3,"h":4,"i":5,"j":6,"k":7}]}`), []want{{0, "payload", "more than 10 keys"}}},
		{"payload duplicate key", FormatJSON, pl(`{"a":1,"b":2,"a":3}`), []want{{0, "payload", `duplicate key "a" in payload`}}},
		{"payload duplicate key by escape", FormatJSON, pl(`{"a":1,"\u0061":2}`), []want{{0, "payload", `duplicate key "a"`}}},
		{"payload nested duplicate key", FormatJSON, pl(`{"x":[{"k":1},{"k":1,"k":2}]}`), []want{{0, "payload", `duplicate key "k" in payload.x[1]`}}},
		{"payload huge number", FormatJSON, pl(`{"n":1e400}`), []want{{0, "payload", "1e400 is outside the finite float64 range at payload.n"}}},
		{"payload huge negative number", FormatJSON, pl(`{"n":[-2e308]}`), []want{{0, "payload", "outside the finite float64 range at payload.n[0]"}}},
		{"payload long number", FormatJSON, pl(`{"n":` + strings.Repeat("1", 101) + `}`), []want{{0, "payload", "101 characters"}}},
		{"payload NUL in value", FormatJSON, pl(`{"s":"a\u0000"}`), []want{{0, "payload", `string at payload.s: contains \u0000`}}},
		{"payload NUL in key", FormatJSON, pl(`{"a\u0000":1}`), []want{{0, "payload", `\u0000`}}},
		{"payload lone high surrogate", FormatJSON, pl(`{"s":"\ud800x"}`), []want{{0, "payload", "unpaired UTF-16 surrogate"}}},
		{"payload lone low surrogate", FormatJSON, pl(`{"s":"\udc00"}`), []want{{0, "payload", "unpaired UTF-16 surrogate"}}},
		{"payload high then non-low", FormatJSON, pl(`{"s":"\ud800\u0041"}`), []want{{0, "payload", "unpaired UTF-16 surrogate"}}},
		{"payload invalid UTF-8", FormatJSON, pl("{\"s\":\"\xc3\x28\"}"), []want{{0, "payload", "invalid UTF-8"}}},
		{"payload invalid UTF-8 key", FormatJSON, pl("{\"\xed\xa0\x80\":1}"), []want{{0, "payload", "invalid UTF-8"}}},
		{"payload long key", FormatJSON, pl(`{"` + strings.Repeat("k", 257) + `":1}`), []want{{0, "payload", "257 bytes, more than 256"}}},

		{"every bad event listed", FormatJSON, `[{"clientId":"ok"},{"id":"x y"},{"clientId":"c","payload":1},{"clientId":"ok"}]`, []want{
			{1, "id", "1-128 characters"}, {1, "clientId", "required"}, {2, "payload", "must be a JSON object"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := Decode([]byte(tc.body), tc.format, testNow, testLim)
			if evs != nil {
				t.Errorf("returned %d events with an error", len(evs))
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a validation error", err)
			}
			got := details(err)
			if len(got) != len(tc.want) {
				t.Fatalf("details %+v, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Index != w.index || g.Field != w.field || !strings.Contains(g.Message, w.msg) {
					t.Errorf("detail %d = %+v, want index %d field %q message containing %q", i, g, w.index, w.field, w.msg)
				}
			}
			if msg := err.Error(); !strings.Contains(msg, "nothing was stored") && len(got) > 0 && got[0].Index >= 0 {
				t.Errorf("message %q does not say nothing was stored", msg)
			}
		})
	}
}

func TestDecodeTooMany(t *testing.T) {
	for name, body := range map[string]struct {
		f Format
		b string
	}{
		"json":   {FormatJSON, "[" + strings.TrimSuffix(strings.Repeat(`{"clientId":"c"},`, 6), ",") + "]"},
		"ndjson": {FormatNDJSON, strings.Repeat(`{"clientId":"c"}`+"\n", 6)},
	} {
		_, err := Decode([]byte(body.b), body.f, testNow, testLim)
		if !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrTooLarge", name, err)
		}
	}
}

func TestDecodeBoundsDetailsAndDepth(t *testing.T) {
	lim := testLim
	lim.MaxEvents = 1000
	body := "[" + strings.TrimSuffix(strings.Repeat(`{"clientId":""},`, 500), ",") + "]"
	_, err := Decode([]byte(body), FormatJSON, testNow, lim)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Details) != MaxDetails || !strings.Contains(ve.Message, "500 of 500 events invalid") ||
		!strings.Contains(ve.Message, "first 100 of 500 problems") {
		t.Fatalf("err = %v (%d details)", err, len(details(err)))
	}

	// Nesting far beyond any limit ends decoding with an error, without exhausting the stack.
	for _, body := range []string{
		`{"clientId":"c","payload":{"a":` + strings.Repeat("[", 1_000_000),
		`{"clientId":"c","other":` + strings.Repeat(`{"a":`, 1_000_000),
		strings.Repeat("[", 1_000_000),
	} {
		_, err := Decode([]byte(body), FormatJSON, testNow, testLim)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("deep body: err = %v", err)
		}
	}
}

func TestDecodeLargeObjectDuplicates(t *testing.T) {
	lim := testLim
	lim.MaxPayloadKeys, lim.MaxPayloadBytes = 1000, 1<<20
	var b strings.Builder
	b.WriteString(`{"clientId":"c","payload":{`)
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	b.WriteString(`"k250":0}}`)
	_, err := Decode([]byte(b.String()), FormatJSON, testNow, lim)
	if d := details(err); len(d) != 1 || !strings.Contains(d[0].Message, `duplicate key "k250"`) {
		t.Fatalf("err = %v", err)
	}
	ok := strings.Replace(b.String(), `"k250":0}}`, `"k500":0}}`, 1)
	if _, err := Decode([]byte(ok), FormatJSON, testNow, lim); err != nil {
		t.Fatalf("500 distinct keys: %v", err)
	}
}

func TestTimestampRangeOfIndex(t *testing.T) {
	lim := testLim
	lim.MaxPastAge = 100 * 365 * 24 * time.Hour
	_, err := Decode([]byte(`{"clientId":"c","timestamp":"1969-12-31T23:59:59Z"}`), FormatJSON, testNow, lim)
	if d := details(err); len(d) != 1 || !strings.Contains(d[0].Message, "date_nanos") {
		t.Fatalf("err = %v", err)
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{"a": true, "A-z_0.9:x": true, ".": true, strings.Repeat("x", 128): true,
		"": false, strings.Repeat("x", 129): false, "a/b": false, "a b": false, "é": false, "a\n": false, "a#": false} {
		if ValidID(id) != ok {
			t.Errorf("ValidID(%q) = %v", id, !ok)
		}
	}
	if id := NewID(); !ValidID(id) {
		t.Errorf("NewID %q is not a valid id", id)
	}
}

// TestDecodeNULIsNotTheEnd: a NUL byte once passed for the end of the body, so whatever followed
// it — another event, a smuggled clientId — was silently ignored and the rest accepted.
func TestDecodeNULIsNotTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		body   string
	}{
		{"after an object", FormatJSON, "{\"clientId\":\"c1\"}\x00"},
		{"before more data", FormatJSON, "{\"clientId\":\"c1\"}\x00{\"clientId\":\"c2\"}"},
		{"only NUL", FormatJSON, "\x00"},
		{"ndjson line", FormatNDJSON, "{\"clientId\":\"c1\"}\n\x00{\"clientId\":\"c2\"}\n"},
		{"ndjson after an event", FormatNDJSON, "{\"clientId\":\"c1\"}\x00\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := Decode([]byte(tc.body), tc.format, testNow, testLim)
			if !errors.Is(err, ErrInvalid) || evs != nil {
				t.Fatalf("events %v, err %v: want a validation error", evs, err)
			}
		})
	}
}
