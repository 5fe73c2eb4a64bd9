package search_test

import (
	"math"
	"net/url"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/metrictest"
	"github.com/spillway/spillway/pkg/search"
)

// manualPoller makes the servers a test starts afterwards poll only on its ticks, and reports
// each poll's outcome; tick sends one tick and returns whether that poll published a snapshot.
// The first poll of each poller, woken by its first stream, is returned by firstPoll.
type manualPoller struct {
	t      *testing.T
	ticks  chan time.Time
	polled chan bool
}

func newManualPoller(t *testing.T) *manualPoller {
	ticks, restoreTicker := search.ManualTicker()
	polled := make(chan bool, 16)
	restoreHook := search.OnPoll(func(published bool) { polled <- published })
	// Cleanups run last in, first out: the servers (started later) stop before these run.
	t.Cleanup(func() { restoreHook(); restoreTicker() })
	return &manualPoller{t: t, ticks: ticks, polled: polled}
}

func (m *manualPoller) tick() bool {
	m.t.Helper()
	select {
	case m.ticks <- time.Now():
	case <-time.After(30 * time.Second): // a guard against hanging, not a latency bound
		m.t.Fatal("the poller did not take a tick")
	}
	return m.poll()
}

func (m *manualPoller) poll() bool {
	m.t.Helper()
	select {
	case published := <-m.polled:
		return published
	case <-time.After(30 * time.Second):
		m.t.Fatal("no poll")
	}
	return false
}

// TestStreamPollerSleepsWhileTheFeedIsIdle: a poll that finds no checkpoint moved refreshes
// nothing, reads nothing and publishes nothing, however often it runs; the first one after the
// feed moved publishes, and the stream delivers the event.
func TestStreamPollerSleepsWhileTheFeedIsIdle(t *testing.T) {
	for _, mode := range readPaths {
		t.Run(mode.name, func(t *testing.T) {
			defer search.SetWindowStreams(mode.streams)()
			m := newManualPoller(t)
			feed := newFakeFeed("a-1/0")
			feed.add(0, "x", "") // the shard has a checkpoint
			cfg := testConfig()
			cfg.StreamPoll = time.Hour // polls come from the test's ticks
			srv := startServer(t, &fakeStore{t: t}, feed, cfg)
			st := srv.openStream(t, url.Values{"clientId": {"a"}}, "")
			st.next(t) // the start token
			if !m.poll() {
				t.Fatal("the first poll, woken by the new stream, published nothing")
			}
			probes, refreshes, uuids, reads := feed.calls()
			for i := 0; i < 3; i++ {
				if m.tick() {
					t.Fatalf("idle poll %d published a snapshot", i)
				}
			}
			p2, r2, u2, reads2 := feed.calls()
			if p2 != probes+3 || r2 != refreshes || u2 != uuids || reads2 != reads {
				t.Fatalf("idle polls: probes %d → %d, refreshes %d → %d, index reads %d → %d, shard reads %d → %d",
					probes, p2, refreshes, r2, uuids, u2, reads, reads2)
			}
			want := feed.add(0, "a", "")
			if !m.tick() {
				t.Fatal("the poll after the feed moved published nothing")
			}
			if e, _ := st.nextEvent(t); e.ID != want {
				t.Fatalf("got %s, want %s", e.ID, want)
			}
			if _, r3, u3, _ := feed.calls(); r3 != r2+1 || u3 != u2 {
				t.Fatalf("refreshes %d → %d, want one; index metadata read %d → %d times, the shards being the same", r2, r3, u2, u3)
			}
			// A new index changes the shards: the metadata is read again.
			x := feed.addIndex("b-2")
			want = feed.add(x, "a", "")
			if !m.tick() {
				t.Fatal("the poll after a new index published nothing")
			}
			if e, _ := st.nextEvent(t); e.ID != want {
				t.Fatalf("got %s, want %s", e.ID, want)
			}
			if _, _, u4, _ := feed.calls(); u4 != u2+1 {
				t.Fatalf("index metadata read %d → %d times after a new index, want once more", u2, u4)
			}
			if m.tick() {
				t.Fatal("idle again, yet published")
			}

			// The last stream gone, the poller lets its snapshot (and the chains) go; a new
			// stream starts from a fresh one.
			st.close()
			for deadline := time.Now().Add(30 * time.Second); metrictest.Sum(t, srv.reg, "spillway_search_open_streams") != 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the closed stream is still counted open")
				}
			}
			if m.tick() || srv.svc.HasSnapshot() {
				t.Fatal("with no stream open, the poller kept its snapshot")
			}
			st = srv.openStream(t, url.Values{"clientId": {"a"}}, "")
			st.next(t)
			if !m.tick() { // the wake-up of the new stream came within an interval of the last poll
				t.Fatal("no fresh snapshot for the new stream")
			}
			want = feed.add(0, "a", "")
			if !m.tick() {
				t.Fatal("the poll after the feed moved published nothing")
			}
			if e, _ := st.nextEvent(t); e.ID != want {
				t.Fatalf("after the release: got %s, want %s", e.ID, want)
			}
		})
	}
}

// TestStreamWakesOnlyForItsClientsAndCatchesUpFromTheChain: with shared windows, a snapshot
// holding events of client a wakes a's stream and not b's; b sleeps through several snapshots
// and, once an event of b arrives, takes it from the chain of windows in memory, without a read
// of its own.
func TestStreamWakesOnlyForItsClientsAndCatchesUpFromTheChain(t *testing.T) {
	defer search.SetWindowStreams(1)()
	m := newManualPoller(t)
	feed := newFakeFeed("a-1/0")
	feed.add(0, "x", "")
	cfg := testConfig()
	cfg.StreamPoll = time.Hour
	srv := startServer(t, &fakeStore{t: t}, feed, cfg)
	a := srv.openStream(t, url.Values{"clientId": {"a"}}, "")
	a.next(t)
	m.poll() // the first snapshot: read by both streams for themselves, from the shard's start
	b := srv.openStream(t, url.Values{"clientId": {"b"}}, "")
	b.next(t)
	// b's stream is subscribed; its first read of the shard (against the first snapshot) counts
	// as one read of its own. Wait for it, so that what follows counts only later reads.
	for deadline := time.Now().Add(30 * time.Second); metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "elasticsearch") < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the streams did not read the first snapshot")
		}
	}
	own := metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "elasticsearch")

	for i := 0; i < 3; i++ {
		signals := srv.svc.Signals()
		want := feed.add(0, "a", "")
		if !m.tick() {
			t.Fatal("no snapshot after the feed moved")
		}
		if got := srv.svc.Signals() - signals; got != 1 {
			t.Fatalf("snapshot %d of a's event sent %d wake-ups, want 1 (a's stream only)", i, got)
		}
		if e, _ := a.nextEvent(t); e.ID != want {
			t.Fatalf("a: got %s, want %s", e.ID, want)
		}
	}
	window := metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "window")
	want := feed.add(0, "b", "")
	m.tick()
	if e, _ := b.nextEvent(t); e.ID != want {
		t.Fatalf("b: got %s, want %s", e.ID, want)
	}
	if o := metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "elasticsearch"); o != own {
		t.Fatalf("reads of their own %v → %v: b did not catch up from the chain", own, o)
	}
	if w := metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "window"); w <= window {
		t.Fatalf("reads from windows %v → %v", window, w)
	}
}

// TestStreamRetriesAFailedReadWithoutWaitingForTheFeed: when a stream's own read fails, it tries
// again after a poll interval even if nothing else arrives, so the event is not held back until
// the feed moves again.
func TestStreamRetriesAFailedReadWithoutWaitingForTheFeed(t *testing.T) {
	defer search.SetWindowStreams(math.MaxInt64)() // own reads only
	m := newManualPoller(t)
	feed := newFakeFeed("a-1/0")
	feed.add(0, "x", "")
	cfg := testConfig()
	cfg.StreamPoll = 20 * time.Millisecond // the retry timer's; the poller ticks only when told
	srv := startServer(t, &fakeStore{t: t}, feed, cfg)
	st := srv.openStream(t, url.Values{"clientId": {"a"}}, "")
	st.next(t)
	m.poll()
	feed.mu.Lock()
	feed.failReads = true
	feed.mu.Unlock()
	want := feed.add(0, "a", "")
	if !m.tick() {
		t.Fatal("no snapshot after the feed moved")
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, _, _, reads := feed.calls(); reads >= 3 { // the first read, the failed one, a retry
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream did not retry its failed read")
		}
	}
	feed.mu.Lock()
	feed.failReads = false
	feed.mu.Unlock()
	if e, _ := st.nextEvent(t); e.ID != want {
		t.Fatalf("got %s, want %s", e.ID, want)
	}
}
