package ingest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillway/spillway/internal/fakeclock"
)

func TestAdmissionRefusesAStandingQueueOnly(t *testing.T) {
	const target, interval = 100 * time.Millisecond, 500 * time.Millisecond
	c := fakeclock.New()
	var delay time.Duration
	var changes []bool
	a := &admission{target: target, interval: interval, delay: func() time.Duration { return delay }, now: c.Now,
		onChange: func(refusing bool, _ time.Duration) { changes = append(changes, refusing) }}
	steps := []struct {
		name    string
		advance time.Duration
		delay   time.Duration
		admit   bool
	}{
		{"no queue", 0, 0, true},
		{"a burst: above target", 10 * time.Millisecond, 150 * time.Millisecond, true},
		{"still above, within the interval", 400 * time.Millisecond, 300 * time.Millisecond, true},
		{"drained before the interval ended", 50 * time.Millisecond, 20 * time.Millisecond, true},
		{"above again: a new interval starts", 10 * time.Millisecond, 120 * time.Millisecond, true},
		{"above for just under the interval", 499 * time.Millisecond, 200 * time.Millisecond, true},
		{"above for the whole interval: refused", time.Millisecond, 200 * time.Millisecond, false},
		{"refused while it stays above", time.Second, 400 * time.Millisecond, false},
		{"below target: admitted at once", 10 * time.Millisecond, 90 * time.Millisecond, true},
		{"above again soon after: refused at once", 100 * time.Millisecond, 110 * time.Millisecond, false},
		{"below", 10 * time.Millisecond, 0, true},
		{"above an interval after refusing stopped: admitted", interval, 200 * time.Millisecond, true},
	}
	for _, s := range steps {
		c.Advance(s.advance)
		delay = s.delay
		if ok, d := a.admit(); ok != s.admit || d != s.delay {
			t.Fatalf("%s: admit = %v (delay %v), want %v", s.name, ok, d, s.admit)
		}
	}
	if want := []bool{true, false, true, false}; len(changes) != len(want) || changes[0] != want[0] || changes[1] != want[1] ||
		changes[2] != want[2] || changes[3] != want[3] {
		t.Errorf("state changes %v, want %v", changes, want)
	}
}

func TestAdmissionOffWithZeroTarget(t *testing.T) {
	a := &admission{delay: func() time.Duration { return time.Hour }, now: fakeclock.New().Now, interval: time.Millisecond}
	for i := 0; i < 3; i++ {
		if ok, _ := a.admit(); !ok {
			t.Fatal("refused with admission control off")
		}
	}
}

// While events queue too long, a request is refused with 429 before its body is read, and
// nothing is written; once the queue drains, requests are admitted again.
func TestPostRefusesWhileEventsQueueTooLong(t *testing.T) {
	cfg := testConfig()
	cfg.QueueDelayTarget, cfg.QueueDelayInterval = 50*time.Millisecond, 200*time.Millisecond
	rg := newRig(t, cfg)
	c := fakeclock.New()
	rg.h.adm.now = c.Now
	setDelay := func(d time.Duration) {
		rg.w.mu.Lock()
		rg.w.delay = d
		rg.w.mu.Unlock()
	}
	body := []byte(`{"clientId":"a"}`)
	setDelay(80 * time.Millisecond)
	if res := rg.post(t, "", jsonCT, body); res.status != http.StatusCreated {
		t.Fatalf("first request above target: %d %s, want 201 (not yet an interval)", res.status, res.body)
	}
	c.Advance(200 * time.Millisecond)
	res := rg.post(t, "", jsonCT, body)
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "2" {
		t.Fatalf("after an interval above target: %d %v %s, want 429 with Retry-After", res.status, res.header, res.body)
	}
	if e := res.envelope(t); e.Code != "overloaded" || !strings.Contains(e.Message, "ingest.queue_delay_target") || !strings.Contains(e.Message, "80ms") {
		t.Errorf("envelope %+v", e)
	}
	if n := rg.w.callCount(); n != 1 {
		t.Errorf("writer called %d times, want only the admitted request's", n)
	}
	if got := testutil.ToFloat64(rg.mon.metrics.refused.WithLabelValues("429", "queue_delay")); got != 1 {
		t.Errorf("refusals counted %v, want 1", got)
	}
	setDelay(10 * time.Millisecond)
	if res := rg.post(t, "", jsonCT, body); res.status != http.StatusCreated {
		t.Fatalf("after the queue drained: %d %s", res.status, res.body)
	}
}
