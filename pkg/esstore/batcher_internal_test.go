package esstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/fakeclock"
	"github.com/spillway/spillway/pkg/event"
)

// fakeSender holds every bulk request until the test answers it: the test decides what is in
// flight and when it ends.
type fakeSender struct{ calls chan *fakeCall }

type fakeCall struct {
	ids        []string
	searchable bool
	bytes      int
	reply      chan fakeReply
}

type fakeReply struct {
	answers []itemAnswer
	status  int
	err     error
}

func newFakeSender() *fakeSender { return &fakeSender{calls: make(chan *fakeCall, 100)} }

func (f *fakeSender) sendBulk(ctx context.Context, body []byte, n int, searchable bool) ([]itemAnswer, int, error) {
	c := &fakeCall{searchable: searchable, bytes: len(body), reply: make(chan fakeReply, 1)}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for line := 0; sc.Scan(); line++ {
		if line%2 == 0 {
			var meta struct {
				Create struct {
					ID string `json:"_id"`
				} `json:"create"`
			}
			if err := json.Unmarshal(sc.Bytes(), &meta); err != nil {
				panic(fmt.Sprintf("action line %q: %v", sc.Bytes(), err))
			}
			c.ids = append(c.ids, meta.Create.ID)
		}
	}
	if len(c.ids) != n {
		panic(fmt.Sprintf("%d actions in the body, n = %d", len(c.ids), n))
	}
	f.calls <- c
	select {
	case r := <-c.reply:
		return r.answers, r.status, r.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// next returns the next bulk request sent; the test fails if none comes.
func (f *fakeSender) next(t *testing.T) *fakeCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("no bulk request was sent")
		return nil
	}
}

// answer answers every item with status.
func (c *fakeCall) answer(status int) {
	a := make([]itemAnswer, len(c.ids))
	for i := range a {
		a[i].Status = status
	}
	c.reply <- fakeReply{answers: a, status: 200}
}

// rig is a batcher over a fake sender with a fake clock, and a writer's side of it.
type rig struct {
	t      *testing.T
	b      *batcher
	sender *fakeSender
	clock  *fakeclock.Clock
	flushs chan event.Flush
}

func newRig(t *testing.T, maxConcurrent, maxBytes int, linger time.Duration) *rig {
	t.Helper()
	r := &rig{t: t, sender: newFakeSender(), clock: fakeclock.New(), flushs: make(chan event.Flush, 100)}
	lim := newLimiter(maxConcurrent, maxConcurrent, r.clock.Now)
	r.b = newBatcher(r.sender, lim, maxBytes, linger, 0, func(f event.Flush) { r.flushs <- f }, r.clock.Now)
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = r.b.close(ctx)
	})
	return r
}

// add queues events with the ids and returns their result channel.
func (r *rig) add(ctx context.Context, searchable bool, ids ...string) chan itemResult {
	r.t.Helper()
	results := make(chan itemResult, len(ids))
	items := make([]queuedItem, len(ids))
	for i, id := range ids {
		items[i] = queuedItem{line: line(id), ctx: ctx, i: i, results: results, added: r.clock.Now()}
	}
	if err := r.b.add(searchable, items); err != nil {
		r.t.Fatalf("add: %v", err)
	}
	return results
}

func line(id string) []byte {
	return []byte(`{"create":{"_index":"i","_id":"` + id + `"}}` + "\n" + `{"id":"` + id + `"}` + "\n")
}

func (r *rig) inflight() int {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	return r.b.inflight
}

func outcomesOf(t *testing.T, results chan itemResult, n int) []event.Outcome {
	t.Helper()
	out := make([]event.Outcome, n)
	for range n {
		select {
		case res := <-results:
			out[res.i] = res.out
		case <-time.After(10 * time.Second): // a hang guard
			t.Fatal("a result never came")
		}
	}
	select {
	case res := <-results:
		t.Fatalf("a second result for item %d: %+v", res.i, res.out)
	default:
	}
	return out
}

func TestBatcherSendsAtOnceWhenIdle(t *testing.T) {
	r := newRig(t, 2, 1<<20, 0)
	res := r.add(context.Background(), false, "a")
	c := r.sender.next(t)
	if strings.Join(c.ids, ",") != "a" || c.searchable {
		t.Fatalf("sent %v searchable=%v, want a alone", c.ids, c.searchable)
	}
	c.answer(201)
	if out := outcomesOf(t, res, 1); out[0].Result != event.Created {
		t.Fatalf("outcome %+v", out[0])
	}
	if f := <-r.flushs; f.Events != 1 || f.Bytes != int64(len(line("a"))) || f.Failed() || f.Limit != 2 {
		t.Fatalf("flush %+v", f)
	}
}

func TestBatcherGathersWhileRequestsAreInFlight(t *testing.T) {
	r := newRig(t, 2, 1<<20, 0)
	ctx := context.Background()
	r.add(ctx, false, "a")
	r.add(ctx, false, "b")
	first, second := r.sender.next(t), r.sender.next(t)
	var later []chan itemResult
	for _, id := range []string{"c", "d", "e"} {
		later = append(later, r.add(ctx, false, id))
	}
	r.clock.Advance(ms(7))
	if got := r.b.queueDelay(); got != ms(7) {
		t.Errorf("queue delay %v, want 7ms: c has waited that long", got)
	}
	if r.inflight() != 2 {
		t.Fatalf("%d requests in flight, want 2: the limit", r.inflight())
	}
	first.answer(201)
	third := r.sender.next(t)
	if strings.Join(third.ids, ",") != "c,d,e" {
		t.Fatalf("next request carried %v, want c,d,e gathered while two were in flight", third.ids)
	}
	if r.b.queueDelay() != 0 {
		t.Errorf("queue delay %v with nothing waiting", r.b.queueDelay())
	}
	second.answer(201)
	third.answer(201)
	for _, res := range later {
		if out := outcomesOf(t, res, 1); out[0].Result != event.Created {
			t.Fatalf("outcome %+v", out[0])
		}
	}
	var gathered []event.Flush
	for range 3 {
		if f := <-r.flushs; f.Events > 1 {
			gathered = append(gathered, f)
		}
	}
	if len(gathered) != 1 || gathered[0].Events != 3 || gathered[0].Waited != ms(7) {
		t.Fatalf("flushes of more than one event: %+v; want one of 3 events whose first waited 7ms", gathered)
	}
}

func TestBatcherKeepsRequestsUnderTheByteCap(t *testing.T) {
	size := len(line("a0"))
	r := newRig(t, 1, 2*size, 0)
	ctx := context.Background()
	r.add(ctx, false, "a0")
	busy := r.sender.next(t)
	res := r.add(ctx, false, "b1", "b2", "b3", "b4", "b5")
	big := r.add(ctx, false, strings.Repeat("x", 3*size)) // alone over the cap: sent alone
	busy.answer(201)
	var got []string
	for range 4 {
		c := r.sender.next(t)
		if c.bytes > 2*size && len(c.ids) > 1 {
			t.Errorf("a request of %d bytes with %d events, over the %d-byte cap", c.bytes, len(c.ids), 2*size)
		}
		got = append(got, strings.Join(c.ids, ","))
		c.answer(201)
	}
	want := []string{"b1,b2", "b3,b4", "b5", strings.Repeat("x", 3*size)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("requests %q, want %q", got, want)
	}
	outcomesOf(t, res, 5)
	outcomesOf(t, big, 1)
}

func TestBatcherSendsEachModeInItsOwnRequest(t *testing.T) {
	r := newRig(t, 1, 1<<20, 0)
	ctx := context.Background()
	r.add(ctx, false, "a")
	busy := r.sender.next(t)
	r.add(ctx, true, "s1")
	r.clock.Advance(ms(1))
	r.add(ctx, false, "d1")
	r.add(ctx, true, "s2")
	busy.answer(201)
	c := r.sender.next(t)
	if !c.searchable || strings.Join(c.ids, ",") != "s1,s2" {
		t.Fatalf("first request after the busy one: %v searchable=%v, want the older searchable batch s1,s2", c.ids, c.searchable)
	}
	c.answer(201)
	c = r.sender.next(t)
	if c.searchable || strings.Join(c.ids, ",") != "d1" {
		t.Fatalf("then %v searchable=%v, want d1 durable", c.ids, c.searchable)
	}
	c.answer(201)
}

func TestBatcherAnswersEveryItem(t *testing.T) {
	r := newRig(t, 1, 1<<20, 0)
	ctx := context.Background()
	res := r.add(ctx, false, "created", "dup", "busy", "bad", "blocked")
	c := r.sender.next(t)
	a := make([]itemAnswer, 5)
	a[0].Status = 201
	a[1].Status, a[1].Error.Type = 409, "version_conflict_engine_exception"
	a[2].Status, a[2].Error.Type, a[2].Error.Reason = 429, "es_rejected_execution_exception", "queue full"
	a[3].Status, a[3].Error.Type, a[3].Error.Reason = 400, "document_parsing_exception", "too deep"
	a[3].Error.Cause.Type, a[3].Error.Cause.Reason = "illegal_argument_exception", "depth"
	a[4].Status, a[4].Error.Type = 403, "cluster_block_exception"
	c.reply <- fakeReply{answers: a, status: 200}
	out := outcomesOf(t, res, 5)
	want := []event.WriteResult{event.Created, event.Duplicate, event.Pending, event.Rejected, event.Pending}
	for i, o := range out {
		if o.Result != want[i] {
			t.Errorf("item %d: %+v, want %v", i, o, want[i])
		}
	}
	if out[3].Status != 400 || out[3].Reason != "document_parsing_exception: too deep (caused by illegal_argument_exception: depth)" {
		t.Errorf("rejected item: %+v", out[3])
	}
	if f := <-r.flushs; f.Throttled != 1 || f.Failed() {
		t.Errorf("flush %+v: want one throttled item, not failed", f)
	}

	// A request that failed as a whole: every item is event.Pending with the reason.
	res = r.add(ctx, false, "x", "y")
	c = r.sender.next(t)
	c.reply <- fakeReply{status: 200, err: errors.New("bulk response: 0 items for 2 sent")}
	for i, o := range outcomesOf(t, res, 2) {
		if o.Result != event.Pending || !strings.Contains(o.Reason, "0 items for 2 sent") {
			t.Errorf("item %d of a request without item answers: %+v", i, o)
		}
	}
	if f := <-r.flushs; f.Failed() {
		t.Errorf("an unreadable 200 counted as a failed request: %+v", f)
	}
	res = r.add(ctx, false, "z")
	r.sender.next(t).reply <- fakeReply{err: errors.New("connection refused")}
	if o := outcomesOf(t, res, 1)[0]; o.Result != event.Pending || o.Reason != "connection refused" {
		t.Errorf("transport error: %+v", o)
	}
	if f := <-r.flushs; !f.Failed() || f.Limit != 1 {
		t.Errorf("transport error flush %+v: want failed", f)
	}
}

func TestBatcherDoesNotSendAbandonedItems(t *testing.T) {
	r := newRig(t, 1, 1<<20, 0)
	r.add(context.Background(), false, "busy")
	busy := r.sender.next(t)
	gone, cancel := context.WithCancel(context.Background())
	abandoned := r.add(gone, false, "gone")
	kept := r.add(context.Background(), false, "kept")
	cancel()
	busy.answer(201)
	c := r.sender.next(t)
	if strings.Join(c.ids, ",") != "kept" {
		t.Fatalf("sent %v, want only the item whose writer still waits", c.ids)
	}
	c.answer(201)
	if o := outcomesOf(t, abandoned, 1)[0]; o.Result != event.Pending {
		t.Errorf("abandoned item: %+v", o)
	}
	outcomesOf(t, kept, 1)
}

func TestBatcherLingerFlushAndCloseDrain(t *testing.T) {
	r := newRig(t, 2, 1<<20, time.Hour)
	ctx := context.Background()
	first := r.add(ctx, false, "a", "b")
	if r.inflight() != 0 {
		t.Fatal("sent before its linger ended")
	}
	r.clock.Advance(ms(5))
	if got := r.b.queueDelay(); got != 0 {
		t.Errorf("queue delay %v during the linger, want 0: lingering is not queueing", got)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- r.b.flush(ctx) }()
	c := r.sender.next(t)
	if strings.Join(c.ids, ",") != "a,b" {
		t.Fatalf("flush sent %v", c.ids)
	}
	c.answer(201)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	outcomesOf(t, first, 2)

	second := r.add(ctx, false, "c")
	closed := make(chan error, 1)
	go func() { closed <- r.b.close(ctx) }()
	c = r.sender.next(t)
	if strings.Join(c.ids, ",") != "c" {
		t.Fatalf("close sent %v", c.ids)
	}
	c.answer(201)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if o := outcomesOf(t, second, 1)[0]; o.Result != event.Created {
		t.Fatalf("drained item: %+v", o)
	}
	if err := r.b.add(false, []queuedItem{{line: line("late"), ctx: ctx, results: make(chan itemResult, 1)}}); !errors.Is(err, errClosed) {
		t.Fatalf("add after close: %v", err)
	}
}

// When Close runs out of time, the request in flight is cancelled and what was never sent is
// answered event.Pending: no writer waits for a result that cannot come.
func TestBatcherCloseThatGivesUpAnswersEverything(t *testing.T) {
	r := newRig(t, 1, 1<<20, 0)
	ctx := context.Background()
	inFlight := r.add(ctx, false, "a")
	r.sender.next(t) // never answered
	queued := r.add(ctx, false, "b", "c")
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.b.close(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("close: %v", err)
	}
	if o := outcomesOf(t, inFlight, 1)[0]; o.Result != event.Pending {
		t.Errorf("in flight at close: %+v", o)
	}
	for _, o := range outcomesOf(t, queued, 2) {
		if o.Result != event.Pending || !strings.Contains(o.Reason, "closed") {
			t.Errorf("queued at close: %+v", o)
		}
	}
	if n := r.b.queuedItems(); n != 0 {
		t.Errorf("%d items still counted as queued", n)
	}
}
