package search_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// TestStreamFollowsElasticsearch: events indexed after subscribing arrive in order; a reader
// that drops the connection and reconnects to another replica with Last-Event-ID gets the
// rest without a gap or a duplicate; one that reconnects with the start token gets all.
func TestStreamFollowsElasticsearch(t *testing.T) { bothReadPaths(t, testStreamFollowsElasticsearch) }

func testStreamFollowsElasticsearch(t *testing.T, shared bool) []*server {
	env := newESEnv(t, 1) // one shard: _seq_no order is indexing order
	cfg := testConfig()
	replicaA := startServer(t, env.store, env.store, cfg)
	replicaB := startServer(t, env.store, env.store, cfg)
	q := url.Values{"clientId": {"a"}, "type": {"t"}}

	old := ev("old-1", "a", "t", time.Now())
	old.IngestedAt = time.Now().Add(-time.Minute)
	env.index(t, []event.Event{old, ev("old-2", "a", "t", time.Now())})
	time.Sleep(2 * time.Millisecond) // the subscription starts a microsecond or more later

	st := replicaA.openStream(t, q, "")
	start := st.next(t)
	if start.data != "" || start.id == "" {
		t.Fatalf("first message %+v, want the start token alone", start)
	}
	now := time.Now()
	var want []string
	batch := func(n int, prefix string) {
		var events []event.Event
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%03d", prefix, i)
			e := ev(id, []string{"a", "a", "b"}[i%3], []string{"t", "t", "u", "t"}[i%4], now.Add(time.Duration(i)*time.Second))
			if e.ClientID == "a" && e.Type == "t" {
				want = append(want, id)
			}
			events = append(events, e)
		}
		env.index(t, events)
	}
	batch(150, "one")
	for i := 0; i < 30; i++ {
		e, _ := st.nextEvent(t)
		if e.ID != want[i] {
			t.Fatalf("event %d: %s, want %s", i, e.ID, want[i])
		}
	}
	e, lastID := st.nextEvent(t)
	if e.ID != want[30] {
		t.Fatalf("event 30: %s, want %s", e.ID, want[30])
	}
	st.close()

	batch(150, "two")
	st = replicaB.openStream(t, q, lastID)
	for i := 31; i < len(want); i++ {
		e, _ := st.nextEvent(t)
		if e.ID != want[i] || e.ClientID != "a" || e.Type != "t" || string(e.Payload) != fmt.Sprintf(`{"id":%q}`, e.ID) {
			t.Fatalf("after reconnecting: event %d is %+v, want %s", i, e, want[i])
		}
	}
	// Nothing else is pending: the next event is one indexed now.
	env.index(t, []event.Event{ev("sentinel", "a", "t", time.Now())})
	if e, _ := st.nextEvent(t); e.ID != "sentinel" {
		t.Fatalf("after the last expected event: %s, want the sentinel", e.ID)
	}
	want = append(want, "sentinel")

	// The start token on the other replica replays everything since the subscription.
	st2 := replicaB.openStream(t, q, start.id)
	for i := range want {
		if e, _ := st2.nextEvent(t); e.ID != want[i] {
			t.Fatalf("from the start token: event %d is %s, want %s", i, e.ID, want[i])
		}
	}
	return []*server{replicaA, replicaB}
}

// TestStreamExactlyOnceAcrossShardsAndDays follows events spread over two daily indices of
// two shards each while a writer keeps indexing, reconnecting at random points to either replica.
func TestStreamExactlyOnceAcrossShardsAndDays(t *testing.T) {
	bothReadPaths(t, testStreamExactlyOnceAcrossShardsAndDays)
}

func testStreamExactlyOnceAcrossShardsAndDays(t *testing.T, shared bool) []*server {
	env := newESEnv(t, 2)
	cfg := testConfig()
	replicas := []*server{startServer(t, env.store, env.store, cfg), startServer(t, env.store, env.store, cfg)}
	q := url.Values{"clientId": {"a", "c"}}
	st := replicas[0].openStream(t, q, "")
	lastID := st.next(t).id

	written := make(chan int, 16)
	go func() {
		defer close(written)
		r := rand.New(rand.NewPCG(11, 12))
		today := time.Now()
		for b := 0; b < 5; b++ {
			var events []event.Event
			for i := 0; i < 1200; i++ {
				ts := today
				if r.IntN(2) == 0 {
					ts = today.Add(-24 * time.Hour) // a late event: yesterday's index
				}
				e := ev(fmt.Sprintf("%d-%04d", b, i), []string{"a", "b", "c"}[r.IntN(3)], "", ts)
				events = append(events, e)
			}
			if err := env.tryBulk(bulkBody(env, events), "false"); err != nil {
				t.Error(err)
				return
			}
			n := 0
			for _, e := range events {
				if e.ClientID != "b" {
					n++
				}
			}
			written <- n
			time.Sleep(100 * time.Millisecond)
		}
	}()
	total := 0
	got := map[string]bool{}
	r := rand.New(rand.NewPCG(13, 14))
	reconnects := 0
	// wr is the writer's channel until it closes (open turns false), then nil. The wait for the
	// next message also watches it: the last events can arrive before the writer has said it is
	// done, and then the close, not a message, is what comes next.
	wr, open := written, true
	count := func(n int, ok bool) {
		if !ok {
			wr, open = nil, false
		} else {
			total += n
		}
	}
	for open || len(got) < total {
		for k := 1 + r.IntN(700); k > 0 && (open || len(got) < total); k-- {
			// Count what the writer has indexed so far.
			for drained := false; !drained && wr != nil; {
				select {
				case n, ok := <-wr:
					count(n, ok)
				default:
					drained = true
				}
			}
			if !open && len(got) == total {
				break
			}
			var m sseMessage
			select {
			case m = <-st.msgs:
			case n, ok := <-wr:
				count(n, ok)
				continue
			case <-time.After(30 * time.Second):
				t.Fatalf("stalled with %d of %d events after %d reconnects", len(got), total, reconnects)
			}
			if m.data == "" {
				continue
			}
			var e apiEvent
			if err := json.Unmarshal([]byte(m.data), &e); err != nil {
				t.Fatal(err)
			}
			if e.ClientID == "b" || got[e.ID] {
				t.Fatalf("event %+v: other client or delivered twice (after %d reconnects)", e, reconnects)
			}
			got[e.ID] = true
			lastID = m.id
		}
		st.close()
		reconnects++
		st = replicas[reconnects%2].openStream(t, q, lastID)
	}
	env.index(t, []event.Event{ev("sentinel", "c", "", time.Now())})
	if e, _ := st.nextEvent(t); e.ID != "sentinel" {
		t.Fatalf("after all %d events: %s, want the sentinel", total, e.ID)
	}
	if len(got) != total || total < 3000 || reconnects < 3 {
		t.Fatalf("got %d of %d events in %d reconnects", len(got), total, reconnects)
	}
	t.Logf("%d events over 4 shards, %d reconnects", total, reconnects)
	return []*server{replicas[0], replicas[1]}
}
