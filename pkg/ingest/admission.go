package ingest

import (
	"sync"
	"time"
)

// admission refuses new requests while events wait too long for a bulk request, the way CoDel
// drops packets: not by the length of the queue but by how long its oldest event has waited
// (the writer's QueueDelay). A delay above target that lasts a whole interval is a standing
// queue — Elasticsearch takes less than is offered — and from then on new requests are refused
// at once, until the delay is below target again. Refusing while that holds keeps the wait of
// the requests admitted near target plus one bulk request, instead of growing for as long as
// the overload lasts; a burst that drains within the interval is never refused.
//
// After refusing stops, the delay rising above target again within an interval resumes
// refusing at once (CoDel re-enters its dropping state the same way): under sustained overload
// the queue would otherwise grow for a full interval each time.
//
// The in-flight budget bounds memory; this bounds waiting. Safe for concurrent use.
type admission struct {
	target, interval time.Duration // target 0: always admit
	delay            func() time.Duration
	now              func() time.Time
	onChange         func(refusing bool, delay time.Duration) // with the lock held; must not call back

	mu         sync.Mutex
	aboveSince time.Time // when the delay rose above target; zero while it is below
	refusing   bool
	stoppedAt  time.Time // when refusing last stopped
}

// admit reports whether a new request may queue events now, and the delay it judged by.
func (a *admission) admit() (ok bool, delay time.Duration) {
	if a.target <= 0 {
		return true, 0
	}
	d := a.delay()
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if d < a.target {
		a.aboveSince = time.Time{}
		if a.refusing {
			a.refusing, a.stoppedAt = false, now
			a.changed(d)
		}
		return true, d
	}
	if a.aboveSince.IsZero() {
		a.aboveSince = now
	}
	recent := !a.stoppedAt.IsZero() && now.Sub(a.stoppedAt) < a.interval
	if !a.refusing && (now.Sub(a.aboveSince) >= a.interval || recent) {
		a.refusing = true
		a.changed(d)
	}
	return !a.refusing, d
}

func (a *admission) changed(d time.Duration) {
	if a.onChange != nil {
		a.onChange(a.refusing, d)
	}
}
