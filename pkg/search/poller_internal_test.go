package search

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// docsFrom makes documents with _seq_no from+1 .. from+n, clients c0..c2 in turn, type t on
// even numbers, ingested at base + _seq_no seconds.
func docsFrom(from int64, n int, base time.Time) []event.Sequenced {
	var out []event.Sequenced
	for i := int64(1); i <= int64(n); i++ {
		seq := from + i
		typ := ""
		if seq%2 == 0 {
			typ = "t"
		}
		at := base.Add(time.Duration(seq) * time.Second)
		out = append(out, event.Sequenced{SeqNo: seq, Event: event.Event{ID: fmt.Sprint(seq), ClientID: fmt.Sprintf("c%d", seq%3),
			Type: typ, Timestamp: at, IngestedAt: at}})
	}
	return out
}

func seqs(docs []event.Sequenced) []int64 {
	var out []int64
	for _, d := range docs {
		out = append(out, d.SeqNo)
	}
	return out
}

// TestChainMatchesLikeElasticsearch: a chain of windows answers a stream's read from any position
// inside it exactly as the filtered query would — clients, types, ingestedAt, _seq_no order, no
// document twice for a client named twice — and refuses a position before it.
func TestChainMatchesLikeElasticsearch(t *testing.T) {
	base := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
	var c *chain
	for from := int64(-1); from < 29; from += 10 {
		c = c.extend(newWindow(from, from+10, docsFrom(from, 10, base)))
	}
	if c.from() != -1 || c.upTo() != 29 || len(c.windows) != 3 || c.docs != 30 {
		t.Fatalf("chain %d..%d of %d windows, %d docs", c.from(), c.upTo(), len(c.windows), c.docs)
	}
	for _, tc := range []struct {
		after int64
		f     event.Filter
		since time.Time
		want  []int64
	}{
		{-1, event.Filter{ClientIDs: []string{"c1"}}, time.Time{}, []int64{1, 4, 7, 10, 13, 16, 19, 22, 25, 28}},
		{12, event.Filter{ClientIDs: []string{"c1", "c2", "c1"}}, time.Time{}, []int64{13, 14, 16, 17, 19, 20, 22, 23, 25, 26, 28, 29}},
		{9, event.Filter{ClientIDs: []string{"c0"}, Types: []string{"t"}}, time.Time{}, []int64{12, 18, 24}},
		{-1, event.Filter{ClientIDs: []string{"c2"}}, base.Add(20 * time.Second), []int64{20, 23, 26, 29}},
		{29, event.Filter{ClientIDs: []string{"c1"}}, time.Time{}, nil},
		{10, event.Filter{ClientIDs: []string{"nobody"}}, time.Time{}, nil},
	} {
		got, ok := c.matching(tc.after, tc.f, tc.since)
		if !ok || !slices.Equal(seqs(got), tc.want) {
			t.Errorf("after %d, %+v, since %v: %v (ok %v), want %v", tc.after, tc.f, tc.since, seqs(got), ok, tc.want)
		}
	}
	// A window that does not start where the chain ends starts a new chain.
	d := c.extend(newWindow(35, 40, docsFrom(35, 5, base)))
	if d.from() != 35 || len(d.windows) != 1 {
		t.Fatalf("a gap joined the chain: %d windows from %d", len(d.windows), d.from())
	}
	if _, ok := d.matching(30, event.Filter{ClientIDs: []string{"c0"}}, time.Time{}); ok {
		t.Fatal("a position before the chain was answered from it")
	}
}

// TestChainDropsItsOldestWindowsBeyondItsBounds: the chain keeps the newest windows within
// chainMaxDocs, always at least the newest one.
func TestChainDropsItsOldestWindowsBeyondItsBounds(t *testing.T) {
	base := time.Now()
	var c *chain
	step := int64(chainMaxDocs / 4)
	for i := int64(0); i < 6; i++ {
		from := -1 + i*step
		c = c.extend(newWindow(from, from+step, docsFrom(from, int(step), base)))
	}
	if c.docs > chainMaxDocs || len(c.windows) != 4 || c.upTo() != -1+6*step {
		t.Fatalf("%d docs in %d windows up to %d", c.docs, len(c.windows), c.upTo())
	}
	big := newWindow(c.upTo(), c.upTo()+chainMaxDocs+1, docsFrom(c.upTo(), chainMaxDocs+1, base))
	if c = c.extend(big); len(c.windows) != 1 || c.windows[0] != big {
		t.Fatalf("a window larger than the bound: %d windows", len(c.windows))
	}
}
