package config

import "github.com/spillway/spillway/pkg/event"

// Limits are the ingest rules as event.Decode takes them: what ingest applies to every request,
// and `archiver import` to every imported record (there, MaxPastAge sets the import horizon).
func (c Ingest) Limits() event.Limits {
	return event.Limits{
		MaxEvents: c.MaxEvents, MaxPayloadBytes: int(c.MaxPayloadBytes), MaxPayloadDepth: c.MaxPayloadDepth,
		MaxPayloadKeys: c.MaxPayloadKeys, MaxFutureSkew: c.MaxFutureSkew, MaxPastAge: c.MaxPastAge,
	}
}
