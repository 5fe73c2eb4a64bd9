package bench

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

// DocShape makes the documents every baseline sends: the same fields and sizes as the load
// generator's events (internal/loadgen), encoded by the function ingest writes its documents with
// (esstore.EncodeDoc, idHash included), so that a raw figure and a Spillway figure measure the
// same bytes. The filler is random alphanumeric text, drawn once per run: it compresses like
// text rather than like a run of one letter.
type DocShape struct {
	EventSize    int    // approximate serialized bytes per event
	Clients      int    // distinct clientIds
	ClientPrefix string // "client-" like the load generator
	filler       string
}

// NewDocShape draws the filler.
func NewDocShape(eventSize, clients int) *DocShape {
	d := &DocShape{EventSize: eventSize, Clients: max(clients, 1), ClientPrefix: "client-"}
	n := max(eventSize-150, 8)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	d.filler = string(b)
	return d
}

// ClientID draws a client id.
func (d *DocShape) ClientID() string { return d.ClientPrefix + strconv.Itoa(rand.IntN(d.Clients)) }

// Payload is the event payload for sequence number seq.
func (d *DocShape) Payload(seq int64) []byte {
	b := make([]byte, 0, len(d.filler)+40)
	return d.appendPayload(b, seq)
}

func (d *DocShape) appendPayload(b []byte, seq int64) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"data":"`...)
	b = append(b, d.filler...)
	return append(b, `"}`...)
}

// Event is the event a client of the load generator would send with sequence number seq,
// stored at ts (as @timestamp and ingestedAt).
func (d *DocShape) Event(id string, ts time.Time, seq int64) event.Event {
	return event.Event{ID: id, ClientID: d.ClientID(), Type: "load", Timestamp: ts, IngestedAt: ts, Payload: d.Payload(seq)}
}

// AppendDoc appends the Elasticsearch document of Event(id, ts, seq) as ingest writes it.
func (d *DocShape) AppendDoc(b []byte, id string, ts time.Time, seq int64) ([]byte, error) {
	doc, err := esstore.EncodeDoc(d.Event(id, ts, seq))
	if err != nil {
		return b, err
	}
	return append(b, doc...), nil
}
