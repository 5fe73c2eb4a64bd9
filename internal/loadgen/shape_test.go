package loadgen

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

// The benchmark's raw baselines (internal/bench: raw _bulk, S5's preload, S6's backlog) claim to send
// the bytes ingest writes for this generator's events. Both documents are compared here: the one
// ingest makes of a generated request (decoded as ingest decodes it, encoded as it encodes it)
// and the baseline's of the same id, time and sequence number: the same fields with the same
// types, idHash included, the same payload keys and filler length.
func TestBaselineDocumentsAreIngestsDocuments(t *testing.T) {
	for _, size := range []int{1024, 5120} {
		g := newGenerator(Config{EventsPerRequest: 1, EventSize: size, Clients: 1000, ClientPrefix: "client-"})
		body, ids := g.request()
		evs, err := event.Decode(body, event.FormatJSON, time.Now(), event.Limits{MaxEvents: 10, MaxPayloadBytes: 1 << 20,
			MaxPayloadDepth: 20, MaxPayloadKeys: 1000, MaxFutureSkew: time.Hour, MaxPastAge: time.Hour})
		if err != nil || len(evs) != 1 {
			t.Fatalf("%v %d", err, len(evs))
		}
		ingest, err := esstore.EncodeDoc(evs[0])
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Seq int64 }
		if err := json.Unmarshal(evs[0].Payload, &p); err != nil {
			t.Fatal(err)
		}
		raw, err := bench.NewDocShape(size, 1000).AppendDoc(nil, ids[0], evs[0].IngestedAt, p.Seq)
		if err != nil {
			t.Fatal(err)
		}
		a, b := shape(t, ingest), shape(t, raw)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%d-byte events: ingest writes %v, the baseline %v\ningest:   %s\nbaseline: %s", size, a, b, ingest, raw)
		}
		var doc struct {
			IDHash int64 `json:"idHash"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil || doc.IDHash != event.IDHash(ids[0]) || doc.IDHash == 0 {
			t.Errorf("baseline idHash %d, want %d (%v)", doc.IDHash, event.IDHash(ids[0]), err)
		}
		if d := len(raw) - len(ingest); d < -3 || d > 3 { // client numbers differ in digits
			t.Errorf("%d-byte events: the baseline's document is %d bytes, ingest's %d", size, len(raw), len(ingest))
		}
	}
}

// shape describes a document: every field with its JSON type, a string's length for the
// payload's filler.
func shape(t *testing.T, doc []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatalf("%v: %s", err, doc)
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(prefix+"."+k, e)
			}
		case string:
			if prefix == ".payload.data" {
				out = append(out, fmt.Sprintf("%s string of %d bytes", prefix, len(x)))
				return
			}
			out = append(out, prefix+" string")
		default:
			out = append(out, prefix+" "+reflect.TypeOf(v).String())
		}
	}
	walk("", m)
	sort.Strings(out)
	return out
}
