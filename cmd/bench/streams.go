package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/internal/loadgen"
)

// s9BaselinePoll is the stream poll S9 compares against: search.stream_poll's default before
// issue 15, run by the same code in the same invocation.
const s9BaselinePoll = "500ms"

// s9Rate is the events per second S9 posts, spread over the streams' clients.
const s9Rate = 1000

// streamRound is one S9 round of one search configuration.
type streamRound struct {
	Config      string               `json:"config"`
	Result      loadgen.StreamResult `json:"streams"`
	Load        *loadgen.Result      `json:"load"`
	Acked       int                  `json:"acknowledged"`
	CPU         CPUCores             `json:"cpu_cores"`
	Search      map[string]float64   `json:"search_metrics,omitempty"` // what search's poller did, from its /metrics
	AwaitFailed string               `json:"await_error,omitempty"`
}

// streams runs S9, live readers: one ingest process on a fresh prefix, and in every round two
// search processes in turn — search as configured (its defaults and --search-set) and the same
// code with search.stream_poll at the previous default — each with S9Streams streams open, one
// per client, while the load generator posts 1,000 events/s of 1 KB spread over those clients.
// Every acknowledged event must reach its client's stream exactly once; delivery is timed from
// the post to the receipt; the cores of search, ingest and Elasticsearch are measured during the
// load, which starts once every stream has read the shards once. The rounds alternate the order
// of the two configurations.
func (r *runner) streams(ctx context.Context) error {
	prefix := r.run + "strm"
	if _, err := r.es(ctx, prefix); err != nil {
		return err
	}
	in, err := r.startIngest(ctx, "ingest-streams", r.st.esURL, prefix)
	if err != nil {
		return err
	}
	defer in.stop()
	n := r.plan.S9Streams
	// Warm-up, not recorded: the index of the day exists and ingest has its connections; then a
	// short round with the streams open, so that the node has compiled the streams' queries (in
	// a run of S9 alone, the first round on a fresh node had the worst tail of all, whatever
	// the poll).
	if _, err := r.lg(ctx, "warmup-S9", loadgen.Config{IngestURL: "http://" + in.addr, Duration: r.plan.WarmDur / 2, Rate: s9Rate,
		Concurrency: 1000, EventsPerRequest: 1, EventSize: 1024, Clients: n}); err != nil {
		return err
	}
	if _, err := r.streamRound(ctx, in, prefix, "warmup-S9-streams", nil, r.plan.WarmDur); err != nil {
		return err
	}
	configs := []struct {
		name string
		env  []string
	}{
		{"spillway", nil},
		{"baseline", []string{"SPILLWAY_SEARCH_STREAM_POLL=" + s9BaselinePoll}},
	}
	rounds := map[string][]streamRound{}
	for round := 1; round <= r.plan.Rounds; round++ {
		order := configs
		if round%2 == 0 {
			order = []struct {
				name string
				env  []string
			}{configs[1], configs[0]}
		}
		for _, c := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			sr, err := r.streamRound(ctx, in, prefix, fmt.Sprintf("S9-%s-round-%d", c.name, round), c.env, r.plan.S9Dur)
			if err != nil {
				return err
			}
			sr.Config = c.name
			rounds[c.name] = append(rounds[c.name], *sr)
			time.Sleep(3 * time.Second)
		}
	}
	r.rep.Runs["S9_rounds"] = rounds
	r.set(s9Row(n, r.plan.S9Dur, rounds["spillway"], rounds["baseline"], r.searchSetting()))
	r.rep.Runs["S9"] = s9Summary(n, rounds["spillway"], rounds["baseline"])
	return nil
}

// searchSetting is the stream poll search runs with in this invocation.
func (r *runner) searchSetting() string {
	for _, kv := range r.searchSet {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "search.stream_poll" {
			return v
		}
	}
	return "its default"
}

// streamRound starts a search process, opens the streams, posts the load for dur and checks
// delivery.
func (r *runner) streamRound(ctx context.Context, in *proc, prefix, name string, extra []string, dur time.Duration) (*streamRound, error) {
	addr, admin, err := serviceAddrs()
	if err != nil {
		return nil, err
	}
	env := append(r.spillwayEnv(addr, admin, r.st.esURL, prefix, "", ""), r.searchEnv()...)
	se, err := r.st.start(ctx, "search-"+name, "search", nil, append(env, extra...), addr, true)
	if err != nil {
		return nil, err
	}
	se.admin = admin
	defer se.stop()
	n := r.plan.S9Streams
	openCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	streams, err := loadgen.OpenStreams(openCtx, loadgen.StreamConfig{SearchURL: "http://" + addr, Streams: n})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%s: open %d streams: %w", name, n, err)
	}
	defer streams.Close()
	// Settled: every stream has read the shards once (its first read starts from the shard's
	// beginning, filtered by its subscription time: a thousand of them at once is the cost of
	// opening, not of following). The load starts after.
	settle := time.Now()
	for scrape(se).sum("spillway_search_stream_shard_reads_total") < float64(n) {
		if time.Since(settle) > 2*time.Minute || ctx.Err() != nil {
			return nil, fmt.Errorf("%s: the %d streams did not all read the shards within 2 minutes", name, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf("%s: %d streams open and settled in %s", name, n, time.Since(settle).Round(100*time.Millisecond))

	var mu sync.Mutex
	var acked bytes.Buffer
	pids := map[string]int{"search": se.pid(), "ingest": in.pid(), "load generator": os.Getpid()}
	before := scrape(se)
	cpu := r.measureCPU(pids)
	res, err := r.lg(ctx, name, loadgen.Config{IngestURL: "http://" + in.addr, Duration: dur, Rate: s9Rate,
		Concurrency: 1000, EventsPerRequest: 1, EventSize: 1024, Clients: n,
		AckedIDs: writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return acked.Write(p) })})
	cores := cpu.stop()
	if err != nil {
		return nil, err
	}
	var ids []string
	sc := bufio.NewScanner(&acked)
	for sc.Scan() {
		ids = append(ids, sc.Text())
	}
	out := &streamRound{Load: res, Acked: len(ids), CPU: cores}
	// The last events need a poll or two after the load ends; a minute is far beyond that, and
	// what has not arrived by then is reported missing.
	waitCtx, cancelWait := context.WithTimeout(ctx, time.Minute)
	if err := streams.Await(waitCtx, ids); err != nil {
		out.AwaitFailed = err.Error()
	}
	cancelWait()
	out.Search = searchPollStats(before, scrape(se))
	out.Result = streams.Result(ids)
	d := out.Result.Latency
	logf("%s: %d streams, %d acknowledged, %d delivered, %d missing, %d duplicates; delivery p50 %.0f p99 %.0f max %.0f ms; %s",
		name, n, len(ids), out.Result.Delivered, out.Result.Missing, out.Result.Duplicates, d.P50, d.P99, d.Max, cores)
	return out, nil
}

// searchPollStats is what search's stream machinery did between two scrapes of its metrics:
// Elasticsearch requests by operation, shard reads by source, events delivered.
func searchPollStats(before, after metrics) map[string]float64 {
	out := map[string]float64{}
	for _, op := range []string{"shards", "index_uuids", "refresh", "read_window", "read_shard"} {
		out["es_"+op] = after.sum("spillway_search_es_query_duration_seconds_count", `op="`+op+`"`) -
			before.sum("spillway_search_es_query_duration_seconds_count", `op="`+op+`"`)
	}
	for _, src := range []string{"window", "elasticsearch"} {
		out["reads_"+src] = after.sum("spillway_search_stream_shard_reads_total", `source="`+src+`"`) -
			before.sum("spillway_search_stream_shard_reads_total", `source="`+src+`"`)
	}
	out["events"] = after.sum("spillway_search_stream_events_total") - before.sum("spillway_search_stream_events_total")
	return out
}

// s9Row reports S9 from its rounds: the medians of the configured search's against those of the
// same code polling every s9BaselinePoll.
func s9Row(n int, dur time.Duration, sp, base []streamRound, poll string) bench.Scenario {
	s := bench.Scenario{ID: "S9"}
	if len(sp) == 0 {
		s.Measured = "not measured"
		return s
	}
	// text describes rounds and returns their median delivery p99, search cores and whether
	// every round delivered exactly once.
	text := func(rs []streamRound) (string, float64, float64, bool) {
		var p50, p99, p999, search, es []float64
		var acked, missing, dups, wrong, ended int64
		once := true
		for _, x := range rs {
			p50, p99, p999 = append(p50, x.Result.Latency.P50), append(p99, x.Result.Latency.P99), append(p999, x.Result.Latency.P999)
			search, es = append(search, x.CPU["search"]), append(es, x.CPU["elasticsearch"])
			acked += int64(x.Acked)
			missing, dups, wrong, ended = missing+x.Result.Missing, dups+x.Result.Duplicates, wrong+x.Result.WrongClient, ended+x.Result.Ended
			once = once && x.Result.ExactlyOnce() && x.Acked > 0
		}
		check := fmt.Sprintf("all %s acknowledged events delivered exactly once", bench.Num(float64(acked)))
		if !once {
			check = fmt.Sprintf("%s acknowledged, %d never delivered, %d delivered twice, %d to another client's stream, %d streams ended early",
				bench.Num(float64(acked)), missing, dups, wrong, ended)
		}
		return fmt.Sprintf("delivery p50 %.0f / p99 %.0f / p99.9 %.0f ms (medians of %d rounds; p99 by round: %s); search %.2f cores, Elasticsearch %.2f (medians); %s",
			median(p50), median(p99), median(p999), len(rs), listf(p99, "%.0f"), median(search), median(es), check), median(p99), median(search), once
	}
	measured, p99, cores, once := text(sp)
	s.Measured = fmt.Sprintf("%s streams, %s events/s of 1 KB posted over their clients for %s per round, search.stream_poll %s: %s",
		bench.Num(float64(n)), bench.Num(s9Rate), dur, poll, measured)
	met := p99 <= 250 && once && n >= 1000
	if len(base) > 0 {
		baseText, baseP99, baseCores, baseOnce := text(base)
		s.Baseline = fmt.Sprintf("search.stream_poll %s (the default before issue 15), same code, same streams and load: %s", s9BaselinePoll, baseText)
		if p99 > 0 {
			s.Ratio = bench.Ptr(baseP99 / p99)
		}
		met = met && baseOnce
		s.Notes = fmt.Sprintf("search's cores at the configured poll are %.2f × those at 500 ms with the same code; ", cores/max(baseCores, 1e-9))
	}
	s.Met = bench.Ptr(met)
	s.Notes += "ratio = the 500 ms poll's median delivery p99 ÷ the configured poll's (above 1: delivered sooner); delivery runs from the " +
		"post (the event's timestamp, stamped as its request is built) to the receipt of its SSE data line; cores are measured during the load"
	return s
}

// s9Summary is S9's figures for the stored runs' table.
func s9Summary(n int, sp, base []streamRound) map[string]any {
	out := map[string]any{"streams": n}
	fig := func(rs []streamRound) map[string]any {
		var p50, p99, search []float64
		once := len(rs) > 0
		for _, x := range rs {
			p50, p99, search = append(p50, x.Result.Latency.P50), append(p99, x.Result.Latency.P99), append(search, x.CPU["search"])
			once = once && x.Result.ExactlyOnce() && x.Acked > 0
		}
		return map[string]any{"delivery_ms": map[string]any{"p50": median(p50), "p99": median(p99)}, "search_cores": median(search), "exactly_once": once}
	}
	out["spillway"] = fig(sp)
	out["baseline"] = fig(base)
	return out
}
