package bench

import (
	"math/rand/v2"
	"strconv"
)

// DocShape makes the documents every baseline sends: the same fields and sizes as the load
// generator's events (pkg/loadgen), so that a raw figure and a Spillway figure measure the same
// bytes. The filler is random alphanumeric text, drawn once per run: it compresses like text
// rather than like a run of one letter.
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

// AppendDoc appends the Elasticsearch document of an event as ingest writes it (esstore.Doc):
// id, clientId, type, @timestamp, ingestedAt (ts, already formatted), payload. Every value is
// plain ASCII, so nothing needs escaping.
func (d *DocShape) AppendDoc(b []byte, id, ts string, seq int64) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","clientId":"`...)
	b = append(b, d.ClientID()...)
	b = append(b, `","type":"load","@timestamp":"`...)
	b = append(b, ts...)
	b = append(b, `","ingestedAt":"`...)
	b = append(b, ts...)
	b = append(b, `","payload":`...)
	b = d.appendPayload(b, seq)
	return append(b, '}')
}
