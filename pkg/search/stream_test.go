package search_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/metrictest"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/search"
)

// fakeFeed keeps shards in memory with the feed's contract: each shard numbers its documents
// from 0, and Shards reports the last number as the global checkpoint. It checks the
// algorithm of the stream; the real feed is tested against Elasticsearch.
type fakeFeed struct {
	mu        sync.Mutex
	shards    []*fakeShard
	fail      bool
	failReads bool // ReadShard fails, the rest answers
	failed    int  // Shards calls refused while failing: polls that found Elasticsearch down
	reads     int
	full      int // reads cut at their size
	probes    int // Shards calls
	refreshes int
	uuids     int // IndexUUIDs calls
}

type fakeShard struct {
	index, uuid string
	shard       int
	docs        []event.Sequenced
}

func newFakeFeed(shards ...string) *fakeFeed {
	f := &fakeFeed{}
	for _, s := range shards { // "index/shard"
		var idx string
		var n int
		fmt.Sscanf(strings.Replace(s, "/", " ", 1), "%s %d", &idx, &n)
		f.shards = append(f.shards, &fakeShard{index: idx, uuid: "uuid-" + idx, shard: n})
	}
	return f
}

// add appends an event to shard i, ingested now, and returns its id.
func (f *fakeFeed) add(i int, client, typ string) string { return f.addAt(i, client, typ, time.Now()) }

// addBefore appends an event ingested a millisecond ago: before any subscription made after
// the call, at the storage's microsecond precision too.
func (f *fakeFeed) addBefore(i int, client, typ string) string {
	return f.addAt(i, client, typ, time.Now().Add(-time.Millisecond))
}

func (f *fakeFeed) addAt(i int, client, typ string, ingested time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh := f.shards[i]
	seq := int64(len(sh.docs))
	id := fmt.Sprintf("%d-%06d", i, seq)
	sh.docs = append(sh.docs, event.Sequenced{SeqNo: seq, Event: event.Event{ID: id, ClientID: client, Type: typ, Timestamp: ingested, IngestedAt: ingested}})
	return id
}

// failedPolls is how many polls found Elasticsearch down (Shards refused).
func (f *fakeFeed) failedPolls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// addIndex adds a shard of a new index; dropIndex deletes an index.
func (f *fakeFeed) addIndex(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shards = append(f.shards, &fakeShard{index: name, uuid: "uuid-" + name})
	return len(f.shards) - 1
}

func (f *fakeFeed) dropIndex(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.shards {
		if s.index == name {
			f.shards = append(f.shards[:i], f.shards[i+1:]...)
			return
		}
	}
}

func (f *fakeFeed) setFail(v bool) {
	f.mu.Lock()
	f.fail = v
	f.mu.Unlock()
}

func (f *fakeFeed) Shards(ctx context.Context) ([]event.Shard, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	if f.fail {
		f.failed++
		return nil, fmt.Errorf("shards: %w", event.ErrUnavailable)
	}
	var out []event.Shard
	for _, s := range f.shards {
		gcp := int64(len(s.docs)) - 1
		out = append(out, event.Shard{Index: s.index, IndexUUID: s.uuid, Shard: s.shard, GlobalCheckpoint: gcp, MaxSeqNo: gcp})
	}
	return out, nil
}

func (f *fakeFeed) RefreshIndices(ctx context.Context, indices ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	return nil
}

// calls returns how often the poller probed the checkpoints, refreshed and read the index
// metadata, and how many shard reads there were.
func (f *fakeFeed) calls() (probes, refreshes, uuids, reads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes, f.refreshes, f.uuids, f.reads
}

func (f *fakeFeed) IndexUUIDs(ctx context.Context) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uuids++
	if f.fail {
		return nil, fmt.Errorf("uuids: %w", event.ErrUnavailable)
	}
	out := map[string]bool{}
	for _, s := range f.shards {
		out[s.uuid] = true
	}
	return out, nil
}

func (f *fakeFeed) ReadShard(ctx context.Context, q event.FeedQuery) ([]event.Sequenced, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.fail || f.failReads {
		return nil, fmt.Errorf("read: %w", event.ErrUnavailable)
	}
	from := event.Truncate(q.IngestedFrom) // Elasticsearch stores microseconds
	for _, s := range f.shards {
		if s.index != q.Index || s.shard != q.Shard {
			continue
		}
		var out []event.Sequenced
		for _, d := range s.docs {
			if d.SeqNo <= q.After || d.SeqNo > q.UpTo || event.Truncate(d.Event.IngestedAt).Before(from) ||
				len(q.ClientIDs) > 0 && !contains(q.ClientIDs, d.Event.ClientID) || len(q.Types) > 0 && !contains(q.Types, d.Event.Type) {
				continue
			}
			if len(out) == q.Size {
				f.full++
				break
			}
			out = append(out, d)
		}
		return out, nil
	}
	return nil, nil
}

func contains(vals []string, v string) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

// TestStreamResumesExactlyOnceAcrossReplicas follows one client through many disconnects, each
// reconnect going to the other replica with Last-Event-ID, while events keep arriving on three
// shards faster than one read returns them (reads are cut at the batch size).
func TestStreamResumesExactlyOnceAcrossReplicas(t *testing.T) {
	bothReadPaths(t, testStreamResumesExactlyOnceAcrossReplicas)
}

func testStreamResumesExactlyOnceAcrossReplicas(t *testing.T, shared bool) []*server {
	feed := newFakeFeed("a-1/0", "a-1/1", "b-2/0")
	cfg := testConfig()
	cfg.StreamPoll = 10 * time.Millisecond
	replicas := []*server{startServer(t, &fakeStore{t: t}, feed, cfg), startServer(t, &fakeStore{t: t}, feed, cfg)}
	q := url.Values{"clientId": {"a"}}

	// Events ingested before the subscription are not streamed.
	feed.addBefore(0, "a", "")
	st := replicas[0].openStream(t, q, "")
	first := st.next(t)
	if first.data != "" || first.id == "" {
		t.Fatalf("first message %+v, want an id-only block with the start token", first)
	}

	// Bursts of 1,500 put about 330 events of client a on each shard between two polls: more
	// than one read returns (200), so reads are cut short and continued.
	const n, burst = 6000, 1500
	want := map[string]bool{}
	var wmu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < n; i++ {
			client := "a"
			if i%3 == 0 {
				client = "b" // other clients share the shards
			}
			id := feed.add(r.IntN(3), client, "")
			if client == "a" {
				wmu.Lock()
				want[id] = true
				wmu.Unlock()
			}
			if i%burst == burst-1 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()

	got := map[string]bool{}
	lastSeq := map[string]int{}
	lastIngested := ""
	lastID := first.id
	r := rand.New(rand.NewPCG(3, 4))
	reconnects := 0
	finished := func() bool {
		select {
		case <-done:
		default:
			return false
		}
		wmu.Lock()
		defer wmu.Unlock()
		return len(got) == len(want)
	}
	deadline := time.Now().Add(time.Minute) // a guard against hanging, not a latency bound
	for !finished() {
		// Read a random number of events, then drop the connection: mostly a few hundred, so
		// that reconnects land in every state, sometimes thousands, so that a connection also
		// lives through many polls and cut-short reads.
		k := 1 + r.IntN(200)
		if r.IntN(4) == 0 {
			k = 1 + r.IntN(3000)
		}
	read:
		for k > 0 {
			var m sseMessage
			select {
			case m = <-st.msgs:
			case <-time.After(20 * time.Millisecond):
				if finished() {
					break read
				}
				if time.Now().After(deadline) {
					wmu.Lock()
					w := len(want)
					wmu.Unlock()
					t.Fatalf("stalled with %d of %d events", len(got), w)
				}
				continue
			}
			if m.data == "" {
				continue // id-only block
			}
			k--
			var e apiEvent
			if err := json.Unmarshal([]byte(m.data), &e); err != nil {
				t.Fatal(err)
			}
			if e.ClientID != "a" {
				t.Fatalf("event of client %q", e.ClientID)
			}
			if got[e.ID] {
				t.Fatalf("event %s delivered twice (after %d reconnects)", e.ID, reconnects)
			}
			got[e.ID] = true
			var shard, seq int
			fmt.Sscanf(e.ID, "%d-%d", &shard, &seq)
			if prev, ok := lastSeq[fmt.Sprint(shard)]; ok && seq <= prev {
				t.Fatalf("shard %d: seq %d after %d", shard, seq, prev)
			}
			lastSeq[fmt.Sprint(shard)] = seq
			// Shards are interleaved by ingestedAt, also across cut-short reads and reconnects
			// (the fake's snapshots are consistent cuts, so the order is total here).
			if e.IngestedAt < lastIngested {
				t.Fatalf("event %s ingested at %s after one ingested at %s", e.ID, e.IngestedAt, lastIngested)
			}
			lastIngested = e.IngestedAt
			lastID = m.id
		}
		st.close()
		reconnects++
		st = replicas[reconnects%2].openStream(t, q, lastID)
	}
	<-done
	t.Logf("%d events, %d reconnects, %d shard reads, %d cut short", len(got), reconnects, feed.reads, feed.full)
	// Own reads must have been cut short and continued; shared windows hold everything.
	if len(got) != len(want) || reconnects < 3 || !shared && feed.full == 0 {
		t.Fatalf("got %d of %d events in %d reconnects", len(got), len(want), reconnects)
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("event %s missed", id)
		}
	}
	if got["0-000000"] {
		t.Fatal("event ingested before the subscription was streamed")
	}
	return []*server{replicas[0], replicas[1]}
}

// TestStreamResumesFromTheStartToken: a reader that reconnects before any event arrived still
// gets every event since its first subscription.
func TestStreamResumesFromTheStartToken(t *testing.T) {
	bothReadPaths(t, testStreamResumesFromTheStartToken)
}

func testStreamResumesFromTheStartToken(t *testing.T, shared bool) []*server {
	feed := newFakeFeed("a-1/0")
	cfg := testConfig()
	cfg.StreamPoll = 10 * time.Millisecond
	srv := startServer(t, &fakeStore{t: t}, feed, cfg)
	q := url.Values{"clientId": {"a"}, "type": {"x"}}
	st := srv.openStream(t, q, "")
	start := st.next(t)
	st.close()
	ids := []string{feed.add(0, "a", "x"), feed.add(0, "a", "y"), feed.add(0, "a", "x")}
	st = srv.openStream(t, q, start.id)
	for _, want := range []string{ids[0], ids[2]} {
		if e, _ := st.nextEvent(t); e.ID != want || e.Type != "x" {
			t.Fatalf("got %+v, want %s", e, want)
		}
	}
	// The token belongs to its parameters.
	if _, status, body := srv.tryStream(t, url.Values{"clientId": {"a"}}, start.id); status != 400 || !strings.Contains(body, "Last-Event-ID") {
		t.Fatalf("token of another query: %d %s", status, body)
	}
	if _, status, _ := srv.tryStream(t, q, start.id[:len(start.id)-3]); status != 400 {
		t.Fatalf("truncated token: %d", status)
	}
	return []*server{srv}
}

// TestStreamKeepsPositionsOfIndicesAReplicaHasNotSeenYet: a reader resumes on a replica whose
// last poll predates an index the token names. The position must survive until that replica
// sees the index (forgetting it would replay the index); once the index is deleted, the
// position leaves the token.
func TestStreamKeepsPositionsOfIndicesAReplicaHasNotSeenYet(t *testing.T) {
	bothReadPaths(t, testStreamKeepsPositionsOfIndicesAReplicaHasNotSeenYet)
}

func testStreamKeepsPositionsOfIndicesAReplicaHasNotSeenYet(t *testing.T, shared bool) []*server {
	feed := newFakeFeed("a-1/0")
	fast, slow := testConfig(), testConfig()
	fast.StreamPoll, slow.StreamPoll = 10*time.Millisecond, time.Second
	a := startServer(t, &fakeStore{t: t}, feed, fast)
	b := startServer(t, &fakeStore{t: t}, feed, slow)
	q := url.Values{"clientId": {"c"}}

	st := b.openStream(t, q, "") // b polls now, and not again for a second
	start := st.next(t).id
	st.close()

	x := feed.addIndex("x-2")
	ids := []string{feed.add(0, "c", ""), feed.add(x, "c", "")}
	st = a.openStream(t, q, start)
	var last string
	for _, want := range ids {
		e, id := st.nextEvent(t)
		if e.ID != want {
			t.Fatalf("got %s, want %s", e.ID, want)
		}
		last = id
	}
	st.close()

	st = b.openStream(t, q, last) // b's snapshot does not know x-2 yet
	sentinel := feed.add(0, "c", "")
	e, withX := st.nextEvent(t)
	if e.ID != sentinel {
		t.Fatalf("after resuming on the lagging replica: %s, want the sentinel %s (x-2 read again)", e.ID, sentinel)
	}

	feed.dropIndex("x-2")
	after := feed.add(0, "c", "")
	e, withoutX := st.nextEvent(t)
	if e.ID != after || len(withoutX) >= len(withX) {
		t.Fatalf("after deleting x-2: %s, token %d characters (was %d)", e.ID, len(withoutX), len(withX))
	}
	return []*server{a, b}
}

func TestStreamCapHeartbeatErrorsAndShutdown(t *testing.T) {
	feed := newFakeFeed("a-1/0")
	cfg := testConfig()
	cfg.MaxStreams = 1
	cfg.StreamPoll = 10 * time.Millisecond
	cfg.StreamHeartbeat = 20 * time.Millisecond
	srv := startServer(t, &fakeStore{t: t}, feed, cfg)
	q := url.Values{"clientId": {"a"}}
	st := srv.openStream(t, q, "")
	st.next(t)

	_, status, body := srv.tryStream(t, q, "")
	var eb errorBody
	if status != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &eb) != nil || eb.Error.Code != "unavailable" {
		t.Fatalf("stream over the cap: %d %s", status, body)
	}
	select {
	case c := <-st.comments:
		if c != "heartbeat" {
			t.Fatalf("comment %q", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no heartbeat")
	}

	// Outliving the server's read timeout (200ms in these tests) does not end the stream: once
	// five of them have passed, a new heartbeat still arrives.
	outlived := time.After(time.Second)
wait:
	for {
		select {
		case <-st.comments: // keep the buffer from filling with old ones
		case <-outlived:
			break wait
		}
	}
drain:
	for {
		select {
		case <-st.comments:
		default:
			break drain
		}
	}
	select {
	case <-st.comments:
	case <-time.After(30 * time.Second):
		t.Fatal("no heartbeat once the read timeout had passed: the stream ended")
	}

	// Elasticsearch failing: the stream stays open, and catches up when it returns.
	feed.setFail(true)
	id := feed.add(0, "a", "")
	failed := feed.failedPolls()
	for deadline := time.Now().Add(30 * time.Second); feed.failedPolls() < failed+3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the poller did not poll while Elasticsearch failed")
		}
	}
	feed.setFail(false)
	if e, _ := st.nextEvent(t); e.ID != id {
		t.Fatalf("after recovery: %+v", e)
	}

	// A closed stream frees its slot.
	st.close()
	var st2 *sseStream
	for i := 0; st2 == nil; i++ {
		if s, status, _ := srv.tryStream(t, q, ""); status == 200 {
			st2 = s
		} else if i > 300 {
			t.Fatal("slot not released after the client left")
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if v := metrictest.Sum(t, srv.reg, "spillway_search_open_streams"); v != 1 {
		t.Fatalf("open streams gauge %v", v)
	}

	// Stopping the poller (what SIGTERM does) ends the open streams.
	srv.stopPoller()
	for range st2.msgs {
	}
	if _, status, _ := srv.tryStream(t, q, ""); status != http.StatusServiceUnavailable {
		t.Fatalf("stream after shutdown: %d", status)
	}
}

// readPaths are the two ways streams read: each its own queries (no window may serve a read),
// and shared windows from the first open stream on; streams is what SetWindowStreams takes.
var readPaths = []struct {
	name    string
	streams int64
}{{"own-reads", math.MaxInt64}, {"shared-windows", 1}}

// bothReadPaths runs a stream test twice: with every stream querying Elasticsearch itself (no
// window may serve a read), and with the poller's shared windows from the first open stream on.
// How many reads a window serves in the second depends on timing (a stream that lags behind a
// window reads for itself), so it is logged, not asserted;
// TestStreamTakesNewEventsFromSharedWindows proves that windows serve reads.
func bothReadPaths(t *testing.T, test func(t *testing.T, shared bool) []*server) {
	for _, mode := range readPaths {
		t.Run(mode.name, func(t *testing.T) {
			defer search.SetWindowStreams(mode.streams)()
			var window, own float64
			for _, srv := range test(t, mode.streams == 1) {
				window += metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "window")
				own += metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "elasticsearch")
			}
			t.Logf("stream shard reads: %v from shared windows, %v own", window, own)
			if mode.streams != 1 && window != 0 {
				t.Fatalf("%v stream shard reads from shared windows with windows off", window)
			}
		})
	}
}

// TestStreamTakesNewEventsFromSharedWindows: a stream that keeps up takes new events from the
// poller's shared window, filtered in memory by clientId, type and subscription time, without a
// query of its own. The poll interval is 500 ms, so the stream has handled each snapshot long
// before the next (one that fell behind would catch up from the chain of windows, also without a
// query: TestStreamWakesOnlyForItsClientsAndCatchesUpFromTheChain).
func TestStreamTakesNewEventsFromSharedWindows(t *testing.T) {
	defer search.SetWindowStreams(1)()
	feed := newFakeFeed("a-1/0")
	cfg := testConfig()
	cfg.StreamPoll = 500 * time.Millisecond
	srv := startServer(t, &fakeStore{t: t}, feed, cfg)
	feed.addBefore(0, "a", "x") // ingested before the subscription: not streamed
	st := srv.openStream(t, url.Values{"clientId": {"a"}, "type": {"x"}}, "")
	st.next(t) // the start token
	reads := func() (window, own float64) {
		return metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "window"),
			metrictest.Sum(t, srv.reg, "spillway_search_stream_shard_reads_total", "source", "elasticsearch")
	}
	// Wait until the stream has read the shard once (its first snapshot, before any window).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if w, o := reads(); w+o > 0 || time.Now().After(deadline) {
			break
		}
	}
	for round := 0; round < 2; round++ {
		window0, own0 := reads()
		feed.add(0, "b", "x") // another client
		feed.add(0, "a", "y") // another type
		want := feed.add(0, "a", "x")
		if e, _ := st.nextEvent(t); e.ID != want {
			t.Fatalf("round %d: got %s, want %s", round, e.ID, want)
		}
		if window, own := reads(); window <= window0 || own != own0 {
			t.Fatalf("round %d: shard reads from windows %v → %v, own %v → %v", round, window0, window, own0, own)
		}
	}
}
