package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// fakeES models what the archiver relies on: per-shard sequence numbers, a global checkpoint
// that may trail the highest sequence number, and documents visible only after a refresh.
type fakeES struct {
	mu         sync.Mutex
	prefix     string
	shards     []*fakeShard
	failShards int // the next n Shards calls fail
	shardCalls int // Shards calls: one per round of the archiver
	refreshes  int
	reads      int
	docsRead   int
}

type fakeShard struct {
	index, uuid string
	shard       int
	docs        []event.Sequenced // docs[i].SeqNo == i
	gcp         int64
	visible     int64 // highest sequence number a search sees
}

func newFakeES() *fakeES { return &fakeES{prefix: "ev"} }

func (f *fakeES) shard(index string, n int) *fakeShard {
	for _, s := range f.shards {
		if s.index == index && s.shard == n {
			return s
		}
	}
	s := &fakeShard{index: index, uuid: "uuid-" + index, shard: n, gcp: -1, visible: -1}
	f.shards = append(f.shards, s)
	return s
}

// add indexes a document into a shard; advance says whether the global checkpoint follows.
func (f *fakeES) add(index string, shard int, d event.Event, advance bool) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(index, shard)
	seq := int64(len(s.docs))
	s.docs = append(s.docs, event.Sequenced{SeqNo: seq, Event: d})
	if advance {
		s.gcp = seq
	}
	return seq
}

func (f *fakeES) advance() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.shards {
		s.gcp = int64(len(s.docs)) - 1
	}
}

func (f *fakeES) Prefix() string { return f.prefix }

func (f *fakeES) DayOf(index string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(index, f.prefix+"-")
	if !ok {
		return time.Time{}, false
	}
	d, err := time.Parse("2006.01.02", rest)
	return d, err == nil
}

func (f *fakeES) Shards(context.Context) ([]event.Shard, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shardCalls++
	if f.failShards > 0 {
		f.failShards--
		return nil, fmt.Errorf("shard stats: %w", event.ErrUnavailable)
	}
	var out []event.Shard
	for _, s := range f.shards {
		out = append(out, event.Shard{Index: s.index, IndexUUID: s.uuid, Shard: s.shard, GlobalCheckpoint: s.gcp, MaxSeqNo: int64(len(s.docs)) - 1})
	}
	return out, nil
}

func (f *fakeES) RefreshIndices(_ context.Context, indices ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	for _, s := range f.shards {
		for _, name := range indices {
			if s.index == name {
				s.visible = int64(len(s.docs)) - 1
			}
		}
	}
	return nil
}

func (f *fakeES) ReadShard(_ context.Context, q event.FeedQuery) ([]event.Sequenced, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	s := f.shard(q.Index, q.Shard)
	var out []event.Sequenced
	for _, d := range s.docs {
		if d.SeqNo > q.After && d.SeqNo <= q.UpTo && d.SeqNo <= s.visible && len(out) < q.Size {
			out = append(out, d)
		}
	}
	f.docsRead += len(out)
	return out, nil
}

func (f *fakeES) OldestAfter(_ context.Context, index string, shard int, after int64) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(index, shard)
	var oldest time.Time
	for _, d := range s.docs {
		if d.SeqNo > after && d.SeqNo <= s.visible {
			t := d.Event.IngestedAt
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	return oldest, !oldest.IsZero(), nil
}

func inRange(d event.Event, r event.Range) bool {
	return !d.Timestamp.Before(r.From) && d.Timestamp.Before(r.To)
}

func (f *fakeES) CountShard(_ context.Context, index string, shard int, upTo int64, ranges []event.Range) ([]event.ShardCount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(index, shard)
	out := make([]event.ShardCount, len(ranges))
	for i, r := range ranges {
		for _, d := range s.docs {
			if d.SeqNo <= s.visible && inRange(d.Event, r) {
				out[i].Total++
				if d.SeqNo <= upTo {
					out[i].UpTo++
					out[i].UpToHash += event.IDHash(d.Event.ID)
				}
			}
		}
	}
	return out, nil
}

func (f *fakeES) ShardIDs(_ context.Context, index string, shard int, upTo int64, r event.Range, limit int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(index, shard)
	var ids []string
	for _, d := range s.docs {
		if d.SeqNo <= s.visible && d.SeqNo <= upTo && inRange(d.Event, r) {
			ids = append(ids, d.Event.ID)
		}
	}
	if len(ids) > limit {
		return nil, event.ErrTooMany
	}
	sort.Strings(ids)
	return ids, nil
}

func (f *fakeES) DocsByID(_ context.Context, ids []string, r event.Range) ([]event.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []event.Event
	for _, s := range f.shards {
		for _, d := range s.docs {
			if d.SeqNo <= s.visible && want[d.Event.ID] && inRange(d.Event, r) {
				out = append(out, d.Event)
			}
		}
	}
	return out, nil
}

func (f *fakeES) CountRange(_ context.Context, r event.Range) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, s := range f.shards {
		for _, d := range s.docs {
			if d.SeqNo <= s.visible && inRange(d.Event, r) {
				n++
			}
		}
	}
	return n, nil
}

func (f *fakeES) ScanRange(ctx context.Context, r event.Range, size int, fn func([]event.Event) error) error {
	f.mu.Lock()
	var all []event.Event
	for _, s := range f.shards {
		for _, d := range s.docs {
			if d.SeqNo <= s.visible && inRange(d.Event, r) {
				all = append(all, d.Event)
			}
		}
	}
	f.mu.Unlock()
	for len(all) > 0 {
		n := min(size, len(all))
		if err := fn(all[:n]); err != nil {
			return err
		}
		all = all[n:]
	}
	return nil
}

// fakePG models the transaction contract: a batch and its checkpoint commit together or not
// at all, (id, UTC day) is unique, and one lease at a time.
type fakePG struct {
	mu                   sync.Mutex
	events               map[eventKey]event.Event
	cps                  map[shardKey]*pgstore.Checkpoint
	holder               *fakeLease
	commits              int
	failCommits          int                   // the next n commits fail and end the lease's session
	beforeCommit         func(b pgstore.Batch) // runs (unlocked) before a commit is applied
	errors               []string
	verifies             []pgstore.VerifyRecord
	repaired, backfilled int64
	leads                int
	refusals             int         // Lead calls answered ErrNotLeader
	down                 bool        // unreachable: every call fails, and so does the lease's session
	ensured              []time.Time // every instant EnsurePartitions was asked for
	parts                []pgstore.Partition
	dropped              []time.Time
	claimed              string
	restores             []pgstore.Restore
}

// eventKey is the archive's identity: an id and the UTC day of its timestamp.
type eventKey struct {
	id  string
	day time.Time
}

func keyOf(r event.Event) eventKey { return eventKey{r.ID, pgstore.Day(r.Timestamp)} }

func newFakePG() *fakePG {
	return &fakePG{events: map[eventKey]event.Event{}, cps: map[shardKey]*pgstore.Checkpoint{}}
}

// dropID removes every row with the id, on any day (p.mu held).
func (p *fakePG) dropID(id string) {
	for k := range p.events {
		if k.id == id {
			delete(p.events, k)
		}
	}
}

type fakeLease struct {
	pg    *fakePG
	alive bool
}

func (p *fakePG) Migrate(context.Context) error { return nil }

func (p *fakePG) ClaimPrefix(_ context.Context, prefix string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.claimed == "" {
		p.claimed = prefix
	}
	if p.claimed != prefix {
		return &pgstore.OtherPrefixError{Schema: "fake", Owner: p.claimed, Prefix: prefix}
	}
	return nil
}

func (p *fakePG) EnsurePartitions(_ context.Context, times ...time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return fmt.Errorf("partitions: %w: connection refused", event.ErrUnavailable)
	}
	p.ensured = append(p.ensured, times...)
	return nil
}

func (p *fakePG) Partitions(context.Context) ([]pgstore.Partition, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return nil, fmt.Errorf("partitions: %w: connection refused", event.ErrUnavailable)
	}
	return slices.Clone(p.parts), nil
}

func (p *fakePG) DropPartition(_ context.Context, day time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropped = append(p.dropped, day)
	p.parts = slices.DeleteFunc(p.parts, func(x pgstore.Partition) bool { return x.Day.Equal(day) })
	return nil
}

func (p *fakePG) OpenRestore(_ context.Context, found, through time.Time) (pgstore.Restore, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.restores {
		if r.RepairedAt.IsZero() && r.DroppedThrough.Equal(through) {
			return r, nil
		}
	}
	r := pgstore.Restore{ID: int64(len(p.restores) + 1), DetectedAt: time.Now(), BoundaryFound: found, DroppedThrough: through}
	p.restores = append(p.restores, r)
	return r, nil
}

func (p *fakePG) CloseRestore(_ context.Context, id int64, lost []pgstore.LostDay) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &p.restores[id-1]
	r.RepairedAt, r.DaysLost = time.Now(), lost
	for _, d := range lost {
		r.EventsLost += d.Logged - d.Archived
	}
	return nil
}

func (p *fakePG) Restores(context.Context) ([]pgstore.Restore, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.restores), nil
}

func (p *fakePG) V1(context.Context) (pgstore.V1State, bool, error) {
	return pgstore.V1State{}, false, nil
}

func (p *fakePG) Lead(_ context.Context, name string) (Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return nil, fmt.Errorf("lead: %w: connection refused", event.ErrUnavailable)
	}
	if p.holder != nil && p.holder.alive {
		p.refusals++
		return nil, pgstore.ErrNotLeader
	}
	p.leads++
	p.holder = &fakeLease{pg: p, alive: true}
	return p.holder, nil
}

func (p *fakePG) Leader(context.Context, string) (pgstore.LeaderInfo, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holder != nil && p.holder.alive {
		return pgstore.LeaderInfo{PID: 42, ApplicationName: "fake"}, true, nil
	}
	return pgstore.LeaderInfo{}, false, nil
}

func (p *fakePG) checkpoints() []pgstore.Checkpoint {
	var out []pgstore.Checkpoint
	for _, c := range p.cps {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].IndexName+fmt.Sprint(out[i].Shard) < out[j].IndexName+fmt.Sprint(out[j].Shard)
	})
	return out
}

func (p *fakePG) Checkpoints(context.Context) ([]pgstore.Checkpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return nil, fmt.Errorf("checkpoints: %w: connection refused", event.ErrUnavailable)
	}
	return p.checkpoints(), nil
}

// setDown makes the database unreachable (ending the lease's session) or reachable again.
func (p *fakePG) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down && p.holder != nil {
		p.holder.alive = false
	}
}

func (p *fakePG) CountRanges(_ context.Context, ranges []event.Range) ([]pgstore.RangeCount, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]pgstore.RangeCount, len(ranges))
	for i, r := range ranges {
		for _, e := range p.events {
			if !e.Timestamp.Before(r.From) && e.Timestamp.Before(r.To) {
				out[i].N++
				out[i].Hash += event.IDHash(e.ID)
			}
		}
	}
	return out, nil
}

func (p *fakePG) IDsInRange(_ context.Context, r event.Range, limit int) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for _, e := range p.events {
		if !e.Timestamp.Before(r.From) && e.Timestamp.Before(r.To) {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) > limit {
		return nil, event.ErrTooMany
	}
	sort.Strings(ids)
	return ids, nil
}

func (p *fakePG) insert(rows []event.Event) int64 {
	var n int64
	for _, r := range rows {
		if _, ok := p.events[keyOf(r)]; !ok {
			p.events[keyOf(r)] = r
			n++
		}
	}
	return n
}

func (p *fakePG) CopyEvents(_ context.Context, origin pgstore.Origin, rows []event.Event) (pgstore.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.insert(rows)
	if origin == pgstore.OriginRepair {
		p.repaired += n
	} else {
		p.backfilled += n
	}
	return pgstore.Result{Inserted: n, Bytes: int64(len(rows))}, nil
}

func (p *fakePG) State(context.Context) (pgstore.State, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := pgstore.State{RowsRepaired: p.repaired, RowsBackfilled: p.backfilled}
	if len(p.errors) > 0 {
		st.LastError = p.errors[len(p.errors)-1]
	}
	if len(p.verifies) > 0 {
		v := p.verifies[len(p.verifies)-1]
		st.LastVerify = &v
	}
	return st, nil
}

func (p *fakePG) RecordError(_ context.Context, msg string, _ time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errors = append(p.errors, msg)
	return nil
}

func (p *fakePG) RecordVerify(_ context.Context, v pgstore.VerifyRecord) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.verifies = append(p.verifies, v)
	return nil
}

func (l *fakeLease) Checkpoints(ctx context.Context) ([]pgstore.Checkpoint, error) {
	if err := l.Alive(ctx); err != nil {
		return nil, err
	}
	return l.pg.Checkpoints(ctx)
}

func (l *fakeLease) Commit(_ context.Context, b pgstore.Batch) (pgstore.Result, error) {
	p := l.pg
	if hook := p.beforeCommit; hook != nil {
		hook(b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !l.alive {
		return pgstore.Result{}, fmt.Errorf("commit batch: %w: connection closed", event.ErrUnavailable)
	}
	if p.failCommits > 0 {
		p.failCommits--
		l.alive = false // the session died: so did the lock
		return pgstore.Result{}, fmt.Errorf("commit batch: %w: connection reset", event.ErrUnavailable)
	}
	k := shardKey{b.IndexUUID, b.Shard}
	cp, ok := p.cps[k]
	if !ok {
		cp = &pgstore.Checkpoint{IndexUUID: b.IndexUUID, Shard: b.Shard, IndexName: b.IndexName, SeqNo: -1}
	}
	if cp.SeqNo != b.From {
		return pgstore.Result{}, &pgstore.CheckpointMovedError{IndexUUID: b.IndexUUID, Shard: b.Shard, Want: b.From, Got: cp.SeqNo}
	}
	n := p.insert(b.Rows)
	cp.SeqNo, cp.Rows = b.To, cp.Rows+n
	p.cps[k] = cp
	p.commits++
	return pgstore.Result{Inserted: n, Bytes: int64(len(b.Rows))}, nil
}

func (l *fakeLease) Alive(context.Context) error {
	l.pg.mu.Lock()
	defer l.pg.mu.Unlock()
	if !l.alive {
		return errors.New("lease: connection closed")
	}
	return nil
}

func (l *fakeLease) Release() {
	l.pg.mu.Lock()
	defer l.pg.mu.Unlock()
	l.alive = false
	if l.pg.holder == l {
		l.pg.holder = nil
	}
}

// doc builds an event as Elasticsearch returns it (times at microsecond precision).
func doc(id string, ts time.Time) event.Event {
	ts = event.Truncate(ts)
	return event.Event{ID: id, ClientID: "c", Type: "t", Timestamp: ts, IngestedAt: ts, Payload: []byte(`{"id":"` + id + `"}`)}
}

// waitFor polls cond until it holds; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newJSONLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// calls is how many rounds have begun (Shards calls).
func (f *fakeES) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shardCalls
}
