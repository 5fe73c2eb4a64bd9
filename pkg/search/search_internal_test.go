package search

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// TestAppendEventWritesWhatEncodingJSONWrote: the hand-assembled event is byte for byte what
// encoding/json wrote for the API's event (no HTML escaping, compacted payload) for payloads as
// ingest stores them, one line for every payload, and valid JSON.
func TestAppendEventWritesWhatEncodingJSONWrote(t *testing.T) {
	reused := newEventEncoder() // an encoder serves many events
	type apiEvent struct {
		ID         string          `json:"id"`
		ClientID   string          `json:"clientId"`
		Type       string          `json:"type,omitempty"`
		Timestamp  string          `json:"timestamp"`
		IngestedAt string          `json:"ingestedAt"`
		Payload    json.RawMessage `json:"payload,omitempty"`
	}
	ts := time.Date(2026, 3, 9, 23, 59, 59, 950000123, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		name string
		e    event.Event
		same bool // encoding/json writes the same bytes
	}{
		{"plain", event.Event{ID: "a", ClientID: "c1", Type: "click", Payload: json.RawMessage(`{"n":1,"s":"<&>\u00e9"}`)}, true},
		{"no type, no payload", event.Event{ID: "a", ClientID: "c1"}, true},
		{"characters to escape", event.Event{ID: "a\"\\\u2028", ClientID: "<c>&\t", Type: "\x01", Payload: json.RawMessage(`[1,"x"]`)}, true},
		{"payload with line breaks", event.Event{ID: "a", ClientID: "c", Payload: json.RawMessage("{\n  \"a\": [1,\r\n 2]\n}")}, true},
		{"payload with spaces", event.Event{ID: "a", ClientID: "c", Payload: json.RawMessage(`{"a": 1}`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.e.Timestamp, tc.e.IngestedAt = ts, ts.Add(time.Second)
			got, err := newEventEncoder().appendEvent([]byte("prefix"), tc.e)
			if err != nil || !strings.HasPrefix(string(got), "prefix") {
				t.Fatalf("%q, %v", got, err)
			}
			got = got[len("prefix"):]
			if again, err := reused.appendEvent(nil, tc.e); err != nil || string(again) != string(got) {
				t.Errorf("a reused encoder wrote %s (%v)", again, err)
			}
			var sb strings.Builder
			enc := json.NewEncoder(&sb)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(apiEvent{ID: tc.e.ID, ClientID: tc.e.ClientID, Type: tc.e.Type,
				Timestamp: event.Truncate(ts).Format(event.TimeFormat), IngestedAt: event.Truncate(ts.Add(time.Second)).Format(event.TimeFormat),
				Payload: tc.e.Payload}); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSuffix(sb.String(), "\n")
			if tc.same && string(got) != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			var back, ref map[string]any
			if err := json.Unmarshal(got, &back); err != nil || json.Unmarshal([]byte(want), &ref) != nil || !jsonEqual(back, ref) {
				t.Errorf("not the same JSON: %s (%v)", got, err)
			}
			if strings.ContainsAny(string(got), "\r\n") {
				t.Errorf("more than one line: %q", got)
			}
		})
	}
}

func jsonEqual(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
