package esstore

import (
	"testing"
	"time"

	"github.com/spillway/spillway/internal/fakeclock"
)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

// round fills every slot of the current limit, as a loaded writer does.
func (l *limiter) round(rtt time.Duration) int { return l.fill(rtt, l.limit) }

// fill sends inflight requests under the current limit and answers them all with rtt, as one
// round of a loaded writer does; it returns the limit after the round.
func (l *limiter) fill(rtt time.Duration, inflight int) int {
	seqs := make([]uint64, inflight)
	for i := range seqs {
		seqs[i] = l.sending()
	}
	for _, s := range seqs {
		l.observe(s, rtt, inflight, false)
	}
	return l.limit
}

func TestLimiterGrowsWhileLatencyStaysAtItsFloor(t *testing.T) {
	c := fakeclock.New()
	l := newLimiter(2, 6, c.Now)
	var got []int
	for i := 0; i < 8; i++ {
		got = append(got, l.round(ms(3)))
		c.Advance(ms(3))
	}
	want := []int{3, 4, 5, 6, 6, 6, 6, 6}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("limits by round %v, want %v: one more per round up to the bound", got, want)
		}
	}
}

func TestLimiterDoesNotGrowWhenTheLoadLeavesSlotsFree(t *testing.T) {
	c := fakeclock.New()
	l := newLimiter(2, 8, c.Now)
	for i := 0; i < 10; i++ {
		l.fill(ms(3), 1) // one request at a time: the limit was never what bounded them
		c.Advance(ms(3))
	}
	if l.current() != 2 {
		t.Fatalf("limit %d after application-limited rounds, want 2", l.current())
	}
}

func TestLimiterShrinksWhenRequestsQueueInTheCluster(t *testing.T) {
	c := fakeclock.New()
	l := newLimiter(4, 8, c.Now)
	l.fill(ms(2), 1) // the floor: 2 ms
	// 4 in flight taking 8 ms: 4 × (1 − 2/8) = 3 requests' worth queued, above vegasBeta.
	if got := l.round(ms(8)); got != 3 {
		t.Fatalf("limit %d, want 3", got)
	}
	// 3 in flight taking 3 ms: 3 × (1 − 2/3) = 1 queued, between alpha and beta: kept.
	if got := l.round(ms(3)); got != 3 {
		t.Fatalf("limit %d, want 3 kept", got)
	}
}

func TestLimiterHalvesWhenTheClusterShedsLoad(t *testing.T) {
	if l := newLimiter(1, 1, fakeclock.New().Now); l.current() != 1 {
		t.Fatalf("limit %d with a ceiling of 1", l.current())
	}
	c := fakeclock.New()
	l := newLimiter(8, 8, c.Now)
	s := l.sending()
	if got := l.observe(s, ms(5), 8, true); got != 4 {
		t.Fatalf("limit %d after a 429, want 4", got)
	}
	// Answers of requests sent before the change do not act again: one halving per round.
	if got := l.observe(s, ms(5), 8, true); got != 4 {
		t.Fatalf("limit %d after a second answer of the same round, want 4", got)
	}
	for i := 0; i < 5; i++ {
		l.observe(l.sending(), ms(5), 8, true)
	}
	if l.current() != minConcurrency {
		t.Fatalf("limit %d, want the floor of %d", l.current(), minConcurrency)
	}
}

func TestLimiterIgnoresAnswersSentUnderTheOldLimit(t *testing.T) {
	c := fakeclock.New()
	l := newLimiter(2, 8, c.Now)
	old := []uint64{l.sending(), l.sending()}
	l.observe(old[0], ms(2), 2, false) // grows to 3
	if l.current() != 3 {
		t.Fatalf("limit %d, want 3", l.current())
	}
	l.observe(old[1], ms(2), 2, false)
	if l.current() != 3 {
		t.Fatalf("limit %d: an answer of a request sent under the old limit changed it", l.current())
	}
}

// The floor is the shortest round trip of the last one or two windows: after a cluster became
// slower for good, the old floor expires and the limit stops shrinking against it.
func TestLimiterFloorExpires(t *testing.T) {
	c := fakeclock.New()
	l := newLimiter(3, 8, c.Now)
	l.fill(ms(2), 1)
	c.Advance(minRTTWindow)
	l.fill(ms(10), 1) // a new window: the previous floor (2 ms) still counts
	if l.base() != ms(2) {
		t.Fatalf("base %v, want 2ms from the previous window", l.base())
	}
	c.Advance(minRTTWindow)
	l.fill(ms(10), 1)
	if l.base() != ms(10) {
		t.Fatalf("base %v, want 10ms once the 2 ms window is two windows old", l.base())
	}
	if got := l.round(ms(10)); got != 4 {
		t.Fatalf("limit %d, want 4: at the new floor nothing queues", got)
	}
}

// A model of a cluster: its write threads share the CPU, so requests beyond their number stretch
// every request's service time. The limiter must keep about one request waiting at a local node
// (no more), and more in flight when a network round trip adds latency that concurrency hides.
func TestLimiterSettlesNearTheClustersCapacity(t *testing.T) {
	tests := []struct {
		name          string
		network       time.Duration
		service       time.Duration
		threads       int
		lowest, upper int
	}{
		{"2-core node on loopback", ms(0.2), ms(2), 2, 2, 3},
		{"2-core node 5 ms away", ms(5), ms(2), 2, 4, 5},
		{"8 write threads 5 ms away", ms(5), ms(2), 8, 8, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeclock.New()
			l := newLimiter(1, 8, c.Now)
			rtt := func(inflight int) time.Duration {
				share := max(1, float64(inflight)/float64(tc.threads))
				return tc.network + time.Duration(share*float64(tc.service))
			}
			seen := map[int]bool{}
			for i := 0; i < 200; i++ {
				n := l.current()
				l.round(rtt(n))
				c.Advance(rtt(n))
				if i >= 100 {
					seen[l.current()] = true
				}
			}
			for n := range seen {
				if n < tc.lowest || n > tc.upper {
					t.Fatalf("limit visited %v after settling, want within [%d, %d]", seen, tc.lowest, tc.upper)
				}
			}
		})
	}
}
