package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/internal/loadgen"
)

// usersPlanPool is the pool of the users' plan: a Heroku Essential database allows 20
// connections.
const usersPlanPool = 20

// s8System is one system S8 sends load to.
type s8System struct {
	name     string // as in the sweep and the rows
	url      string
	ingest   *proc  // Spillway's ingest: its bulk figures and cores; nil for a naive server
	archiver *proc  // Spillway's archiver beside it, whose cores are counted too
	app      string // a naive server's application_name: its connections are counted
	pool     int
}

// s8Pair is one row of S8: Spillway against a naive configuration at one rate.
type s8Pair struct {
	id              string
	rate            float64
	spillway, naive string // system names
}

// The rows of S8, in table order. At 5 ms both naive pools run against the same Spillway
// rounds; at 0 ms (loopback) the users' plan runs against a Spillway without proxies.
var s8Pairs = []s8Pair{
	{"S8a", 1000, "spillway", "naive"},
	{"S8b", 2000, "spillway", "naive"},
	{"S8c", 1000, "spillway", "naive-20"},
	{"S8d", 2000, "spillway", "naive-20"},
	{"S8e", 1000, "spillway-0ms", "naive-20-0ms"},
	{"S8f", 2000, "spillway-0ms", "naive-20-0ms"},
}

// s8Runs is every S8 measurement of a system at a rate, round by round.
type s8Runs struct {
	p50, p99, p999, eps []float64
	failed              int64
	conns               int // most pooled connections a naive server held
}

// wan reproduces the users' situation: the naive design (one INSERT per event through a pool,
// into a plain table) against Spillway (ingest, and the archiver archiving what it takes), both
// with 5 ms of round trip to their stores (latency proxies) — with the users' pool of 500 and
// with the 20 connections of their plan — and both on loopback (0 ms) with the plan's pool. At 5
// ms the three systems are swept over offered rates; S8's rows compare them in rounds of
// alternating order at 1,000 and 2,000 events/s, single-event requests of 5 KB.
func (r *runner) wan(ctx context.Context) error {
	proxy := func(name, target string) (string, error) {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		_, err = r.st.start(ctx, name, "loadgen", []string{"proxy", "--listen", addr, "--target", target, "--rtt", "5ms"}, nil, addr, false)
		return addr, err
	}
	esProxy, err := proxy("proxy-es", strings.TrimPrefix(r.st.esURL, "http://"))
	if err != nil {
		return err
	}
	pgProxy, err := proxy("proxy-pg", fmt.Sprintf("127.0.0.1:%d", r.st.pgPort))
	if err != nil {
		return err
	}
	pgVia := map[bool]string{true: fmt.Sprintf("postgres://spillway:spillway@%s/spillway?sslmode=disable", pgProxy), false: r.st.pgURL}
	esVia := map[bool]string{true: "http://" + esProxy, false: r.st.esURL}

	systems := map[string]*s8System{}
	naive := func(name, schema string, pool int, viaProxy bool) error {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		app := "spillway-" + name
		// Stopped with the stack, like the proxies.
		if _, err := r.st.start(ctx, name, "loadgen", []string{"naive-server", "--listen", addr, "--pg", pgVia[viaProxy],
			"--schema", r.run + "_" + schema, "--pool", fmt.Sprint(pool), "--application-name", app, "--timeout", "10s"}, nil, addr, false); err != nil {
			return err
		}
		systems[name] = &s8System{name: name, url: "http://" + addr, app: app, pool: pool}
		return nil
	}
	spillway := func(name, suffix string, viaProxy bool) error {
		prefix := r.run + suffix
		if _, err := r.es(ctx, prefix); err != nil {
			return err
		}
		in, err := r.startIngest(ctx, "ingest-"+suffix, esVia[viaProxy], prefix)
		if err != nil {
			return err
		}
		arAddr, err := freeAddr()
		if err != nil {
			return err
		}
		ar, err := r.st.start(ctx, "archiver-"+suffix, "archiver", []string{"run"},
			r.spillwayEnv(arAddr, "", esVia[viaProxy], prefix, pgVia[viaProxy], r.run+"_"+suffix), arAddr, false)
		if err != nil {
			return err
		}
		systems[name] = &s8System{name: name, url: "http://" + in.addr, ingest: in, archiver: ar}
		return nil
	}
	for _, start := range []func() error{
		func() error { return naive("naive", "naive", r.plan.NaivePool, true) },
		func() error { return naive("naive-20", "naive20", usersPlanPool, true) },
		func() error { return naive("naive-20-0ms", "naive20lan", usersPlanPool, false) },
		func() error { return spillway("spillway", "wan", true) },
		func() error { return spillway("spillway-0ms", "lan", false) },
	} {
		if err := start(); err != nil {
			return err
		}
	}
	defer func() {
		for _, sys := range systems {
			if sys.ingest != nil {
				_ = sys.ingest.stop()
				_ = sys.archiver.stop()
			}
		}
	}()
	r.rep.Settings["naive.pool"] = fmt.Sprint(r.plan.NaivePool)
	r.rep.Settings["naive.plan_pool"] = fmt.Sprint(usersPlanPool)
	r.rep.Settings["proxy.rtt"] = "5ms"

	sampler, err := r.pg(ctx, "public", "spillway-bench", 1)
	if err != nil {
		return err
	}
	defer sampler.Close()
	runs := map[string]map[float64]*s8Runs{}
	// measure runs one system at one rate, and records the run when the rate is one of S8's
	// rows; it returns the result and the most connections a naive pool held meanwhile.
	measure := func(run string, sys *s8System, rate float64) (*loadgen.Result, int, error) {
		cfg := loadgen.Config{IngestURL: sys.url, Duration: r.plan.SweepDur, Rate: rate, Concurrency: 2000, EventsPerRequest: 1, EventSize: 5120, Timeout: 15 * time.Second}
		var res *loadgen.Result
		var err error
		conns := 0
		if sys.ingest != nil {
			r.cpuExtra = map[string]int{"archiver": sys.archiver.pid()}
			res, _, err = r.lgIngest(ctx, run, sys.ingest, cfg)
			r.cpuExtra = nil
		} else {
			stop := sampleConns(ctx, sampler, sys.app, &conns)
			res, err = r.lg(ctx, run, cfg)
			stop()
		}
		if err != nil || !s8Rate(rate) {
			return res, conns, err
		}
		if runs[sys.name] == nil {
			runs[sys.name] = map[float64]*s8Runs{}
		}
		x := runs[sys.name][rate]
		if x == nil {
			x = &s8Runs{}
			runs[sys.name][rate] = x
		}
		x.p50, x.p99, x.p999 = append(x.p50, res.Latency.P50), append(x.p99, res.Latency.P99), append(x.p999, res.Latency.P999)
		x.eps, x.failed, x.conns = append(x.eps, res.EventsPerSecond), x.failed+failed(res), max(x.conns, conns)
		return res, conns, nil
	}

	// Warm-up, not recorded: the naive pools open their connections (through the proxy, paying
	// the round trip several times each), ingest its connections to the node.
	for _, name := range []string{"naive", "naive-20", "spillway", "naive-20-0ms", "spillway-0ms"} {
		if _, err := r.lg(ctx, "warmup-"+name, loadgen.Config{IngestURL: systems[name].url, Duration: r.plan.WarmDur, Rate: r.plan.SweepRates[0],
			Concurrency: 2000, EventsPerRequest: 1, EventSize: 5120, Timeout: 15 * time.Second}); err != nil {
			return err
		}
	}

	// The sweep at 5 ms. Its points at S8's rates are the first round of S8a-S8d.
	swept := []string{"naive", "naive-20", "spillway"}
	inSweep := map[float64]bool{}
	for _, rate := range r.plan.SweepRates {
		inSweep[rate] = true
		for _, name := range swept {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res, conns, err := measure(fmt.Sprintf("S8-%s-%.0f", name, rate), systems[name], rate)
			if err != nil {
				return err
			}
			bad := failed(res)
			r.rep.Sweep = append(r.rep.Sweep, bench.SweepPoint{System: name, Offered: rate, Achieved: res.EventsPerSecond,
				P50: res.Latency.P50, P90: res.Latency.P90, P99: res.Latency.P99, P999: res.Latency.P999, Max: res.Latency.Max,
				Requests: res.Requests, Errors: bad - res.Unsent, Unsent: res.Unsent,
				Saturated: bench.Saturated(rate, res.EventsPerSecond, res.Requests+res.Unsent, bad, res.Latency.P99), PGConns: conns})
			time.Sleep(3 * time.Second) // let the pool and the queues drain before the next point
		}
	}
	// More rounds, the systems compared with each other in rotating order: one 20-second window
	// on a shared machine can hit a burst of someone else's load (a single point flipped the
	// comparison between two runs). At 0 ms every round is here.
	groups := [][]string{swept, {"spillway-0ms", "naive-20-0ms"}}
	for round := 1; round <= r.plan.Rounds; round++ {
		for _, rate := range []float64{1000, 2000} {
			for g, group := range groups {
				if g == 0 && round == 1 && inSweep[rate] {
					continue // the sweep's point
				}
				for k := range group {
					name := group[(k+round)%len(group)]
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if _, _, err := measure(fmt.Sprintf("S8-%s-%.0f-round-%d", name, rate, round), systems[name], rate); err != nil {
						return err
					}
					time.Sleep(3 * time.Second)
				}
			}
		}
	}
	for _, pair := range s8Pairs {
		sp, nv := runs[pair.spillway][pair.rate], runs[pair.naive][pair.rate]
		if sp == nil || nv == nil {
			continue
		}
		r.set(s8Row(pair, sp, nv, systems[pair.naive].pool))
	}
	describe := func(sys string) string {
		if at := bench.SaturatesAt(r.rep.Sweep, sys); at > 0 {
			return fmt.Sprintf("%s saturates from %s events/s offered", sys, bench.Num(at))
		}
		return fmt.Sprintf("%s kept up at every rate swept", sys)
	}
	sat := describe("naive") + ", " + describe("naive-20") + ", " + describe("spillway") +
		" (saturated: < 95 % of the offered events acknowledged, > 1 % of requests failed, or p99 > 1 s, at that rate and every higher one swept)"
	for i := range r.rep.Scenarios {
		if r.rep.Scenarios[i].ID == "S8b" || r.rep.Scenarios[i].ID == "S8d" {
			r.rep.Scenarios[i].Notes += "; " + sat
		}
	}
	r.rep.Runs["S8_saturation"] = sat
	return nil
}

// s8Rate reports whether S8 has rows at an offered rate.
func s8Rate(rate float64) bool { return rate == 1000 || rate == 2000 }

// s8Row reports one S8 comparison from its rounds: medians, the ratio read "higher is better
// for Spillway" (the naive design's median p99 ÷ Spillway's) and the target of issue 15.
func s8Row(pair s8Pair, sp, nv *s8Runs, pool int) bench.Scenario {
	text := func(x *s8Runs) string {
		return fmt.Sprintf("p50 %.1f / p99 %.1f / p99.9 %.1f ms (medians of %d rounds; p99 by round: %s), %s events/s acknowledged, %d failed in all",
			median(x.p50), median(x.p99), median(x.p999), len(x.p99), listf(x.p99, "%.0f"), bench.Num(median(x.eps)), x.failed)
	}
	s := bench.Scenario{ID: pair.id,
		Measured: "Spillway: " + text(sp),
		Baseline: fmt.Sprintf("naive (pool %d, at most %d connections open): %s", pool, nv.conns, text(nv)),
		Notes:    "ratio = the naive design's median p99 ÷ Spillway's, same rate, rounds alternating (above 1: Spillway's p99 is lower)"}
	ok := false
	if m := median(sp.p99); m > 0 {
		s.Ratio = bench.Ptr(median(nv.p99) / m)
		ok = *s.Ratio >= 1
	}
	s.Met = bench.Ptr(ok && sp.failed == 0)
	return s
}
