package ingest

import (
	"fmt"
	"strconv"

	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/ratelimit"
)

// forbidden refuses a request holding any event for a clientId the principal is not bound to,
// listing each such event (up to event.MaxDetails).
func forbidden(p *auth.Principal, events []event.Event) error {
	if !p.Restricted() {
		return nil
	}
	var details []event.FieldError
	n, first := 0, ""
	for i, e := range events {
		if p.CanActFor(e.ClientID) {
			continue
		}
		if n == 0 {
			first = e.ClientID
		}
		n++
		if len(details) < event.MaxDetails {
			details = append(details, event.FieldError{Index: i, Field: "clientId",
				Message: fmt.Sprintf("API key %q may not post events for clientId %q", p.Name, e.ClientID)})
		}
	}
	if n == 0 {
		return nil
	}
	return &event.Error{Kind: event.ErrForbidden, Details: details,
		Message: fmt.Sprintf("API key %q may not post events for clientId %q (%d of %d events); nothing was stored", p.Name, first, n, len(events))}
}

// keyBucket is the rate-limit bucket of an API key. Buckets of keys and of clientIds live in
// one limiter, so their names must not collide.
func keyBucket(p *auth.Principal) string { return "key\x00" + p.Name }

// charge takes the request's events from the principal's bucket: the API key's, or without keys
// each clientId's own share, all or nothing.
func (h *Handler) charge(p *auth.Principal, events []event.Event) error {
	if h.limit == nil {
		return nil
	}
	const setting = "ratelimit.ingest_events_per_second"
	if p != auth.Anonymous {
		if ok, after := h.limit.AllowAll(map[string]int{keyBucket(p): len(events)}); !ok {
			return ratelimit.Exceeded("API key "+strconv.Quote(p.Name), setting, after)
		}
		return nil
	}
	units := map[string]int{}
	for _, e := range events {
		units["client\x00"+e.ClientID]++
	}
	if ok, after := h.limit.AllowAll(units); !ok {
		who := "the request's clientIds"
		if len(units) == 1 {
			who = "clientId " + strconv.Quote(events[0].ClientID)
		}
		return ratelimit.Exceeded(who, setting, after)
	}
	return nil
}
