package resilience

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDoublesToTheCap(t *testing.T) {
	b := &Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("after Reset: %s", d)
	}
}

// Equal jitter: every delay lies in [nominal/2, nominal], and they are not all the same.
func TestBackoffJitterStaysWithinHalfAndWhole(t *testing.T) {
	b := &Backoff{Base: time.Second, Max: 8 * time.Second, Jitter: true}
	seen := map[time.Duration]bool{}
	for n := range 5 {
		nominal := min(time.Second<<n, 8*time.Second)
		for range 200 {
			d := b.Delay(n)
			if d < nominal/2 || d > nominal {
				t.Fatalf("attempt %d: %s outside [%s, %s]", n, d, nominal/2, nominal)
			}
			seen[d] = true
		}
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct delays: no jitter", len(seen))
	}
}

func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour, nil) {
		t.Fatal("a cancelled sleep reported the full wait")
	}
	stop := make(chan struct{})
	close(stop)
	if Sleep(context.Background(), time.Hour, stop) {
		t.Fatal("a stopped sleep reported the full wait")
	}
	if !Sleep(context.Background(), time.Nanosecond, nil) {
		t.Fatal("a short sleep did not pass")
	}
}

func TestThrottleOncePerIntervalPerKey(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := &Throttle{Every: time.Minute, Now: func() time.Time { return now }}
	if !th.Allow("a") || th.Allow("a") || !th.Allow("b") {
		t.Fatal("first a, second a, first b: want true, false, true")
	}
	now = now.Add(59 * time.Second)
	if th.Allow("a") {
		t.Fatal("a again within the minute")
	}
	now = now.Add(time.Second)
	if !th.Allow("a") {
		t.Fatal("a after a minute")
	}
}

func TestThrottleCountsWhatItHeldBack(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := &Throttle{Every: 10 * time.Second, Now: func() time.Time { return now }}
	var got []int
	for range 4 {
		th.Do("x", func(n int) { got = append(got, n) })
	}
	now = now.Add(10 * time.Second)
	th.Do("x", func(n int) { got = append(got, n) })
	if len(got) != 2 || got[0] != 0 || got[1] != 3 {
		t.Fatalf("logged with suppressed counts %v, want [0 3]", got)
	}
}
