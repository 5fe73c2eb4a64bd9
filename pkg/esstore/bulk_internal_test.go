package esstore

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

func TestEncodeDoc(t *testing.T) {
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	// idHash 835957 = 0x0cc175, the first three bytes of md5("a").
	base := event.Event{ID: "a", ClientID: `c<"&>\`, Type: "t", Timestamp: ts, IngestedAt: ts}
	tests := []struct {
		name, payload, want string
	}{
		{"no payload", "", `{"id":"a","clientId":"c<\"&>\\","type":"t","@timestamp":"2026-03-04T05:06:07.123456Z","ingestedAt":"2026-03-04T05:06:07.123456Z","idHash":835957}`},
		{"payload verbatim", `{"n":123456789012345678901234567890,"s":"\u00e9<&>"}`,
			`{"id":"a","clientId":"c<\"&>\\","type":"t","@timestamp":"2026-03-04T05:06:07.123456Z","ingestedAt":"2026-03-04T05:06:07.123456Z","idHash":835957,"payload":{"n":123456789012345678901234567890,"s":"\u00e9<&>"}}`},
		{"line breaks compacted", "{\n \"a\": 1\r\n}", `{"id":"a","clientId":"c<\"&>\\","type":"t","@timestamp":"2026-03-04T05:06:07.123456Z","ingestedAt":"2026-03-04T05:06:07.123456Z","idHash":835957,"payload":{"a":1}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := base
			if tc.payload != "" {
				e.Payload = json.RawMessage(tc.payload)
			}
			got, err := encodeDoc(e)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want || !json.Valid(got) || strings.ContainsAny(string(got), "\r\n") {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// A document read back is the event written, at storage precision; times that cannot be read
// come back as the zero time, which the archive refuses to store (archive.storable).
func TestDocRoundTrip(t *testing.T) {
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	e := event.Event{ID: "a", ClientID: "c", Type: "t", Timestamp: ts, IngestedAt: ts.Add(time.Second), Payload: json.RawMessage(`{"n":1}`)}
	got := toDoc(e).event()
	want := e
	want.Timestamp, want.IngestedAt = event.Truncate(e.Timestamp), event.Truncate(e.IngestedAt)
	if !got.Timestamp.Equal(want.Timestamp) || !got.IngestedAt.Equal(want.IngestedAt) || got.ID != "a" || got.ClientID != "c" ||
		got.Type != "t" || string(got.Payload) != `{"n":1}` {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "yesterday", "2026-13-01T00:00:00Z"} {
		d := toDoc(e)
		d.Timestamp, d.IngestedAt = bad, bad
		if got := d.event(); !got.Timestamp.IsZero() || !got.IngestedAt.IsZero() {
			t.Errorf("%q: read as %s / %s, want the zero time", bad, got.Timestamp, got.IngestedAt)
		}
	}
}
