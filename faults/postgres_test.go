package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/config"
)

// PostgreSQL unavailable under load. Only the archive depends on it: ingest writes to
// Elasticsearch, and search — with the cold tier on, reading PostgreSQL for what is older than
// Elasticsearch holds — serves recent pages from Elasticsearch, so both must answer as before.
// The archiver must back off (not spin), keep reporting a lag that grows with the outage
// (metrics; `archiver status` once the database answers again), and then catch up exactly once.
func TestFaultPostgresUnavailable(t *testing.T) {
	outage := pick(8*time.Second, 2*time.Minute)
	const backoffMax = 2 * time.Second
	cluster := testenv.StartPG(t) // private: the shared cluster serves other tests
	esCfg := testenv.ES(t)
	pgCfg := testenv.PGAt(t, cluster.URL())
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-faults")
	cfg := loadConfig("")
	cfg.Clients = 5 // every client searched has a full page in Elasticsearch before the outage
	cfg.SearchRate = pick(10.0, 20.0)
	f := newFault(t, "PostgreSQL unavailable", fmt.Sprintf(
		"The (private) PostgreSQL stopped (`pg_ctl stop -m fast`) for %s, then started again, under an open-loop load of "+
			"%.0f requests/s × %d events and %.0f searches/s (latest 100 events of a client; search.cold_tier=true, so search "+
			"also reads PostgreSQL), beside %s; the archiver (archiver.backoff_max=%s) runs throughout; the load continues for "+
			"2 s after the restart, then the archiver is left to catch up.",
		outage, cfg.Rate, cfg.EventsPerRequest, cfg.SearchRate, retriersText(4), backoffMax))
	ing := startIngest(t, esCfg, addr(t))
	search := startSearch(t, esCfg, append(testenv.PGEnv(pgCfg), "SPILLWAY_SEARCH_COLD_TIER=true")...)
	arch := startArchiver(t, esCfg, pgCfg, "SPILLWAY_ARCHIVER_BACKOFF_MAX="+backoffMax.String())
	cfg.IngestURL, cfg.SearchURL = ing.URL, search.URL
	ld := startLoad(f.tr, cfg)
	rt := f.startRetriers(ing.URL, 4, client.AckDurable)
	waitAcks(t, f.tr, 1000)
	waitFor(t, "the archiver's first rows", func() bool { return archivedRows(t, pg) > 0 })
	f.step("load and archiving under way")

	errsBefore, _ := metric(arch.URL, "spillway_archiver_errors_total")
	f.tr.setPhase("outage")
	cluster.Stop(t, false)
	stopped := time.Now()
	f.step("PostgreSQL stop")
	during := archiverStatus(t, esCfg, pgCfg)
	var lags []float64
	for time.Since(stopped) < outage {
		if v, ok := metric(arch.URL, "spillway_archiver_lag_seconds"); ok {
			lags = append(lags, v)
		}
		time.Sleep(500 * time.Millisecond)
	}
	errsDuring, _ := metric(arch.URL, "spillway_archiver_errors_total")
	down := time.Since(stopped)
	f.tr.setPhase("after")
	cluster.Start(t)
	restarted := time.Now()
	f.step("stopped")
	after := archiverStatus(t, esCfg, pgCfg)
	time.Sleep(2 * time.Second)
	ld.Stop(t)
	f.note("%s", rt.Stop(t))
	archivetest.WaitCaughtUp(t, es, pg, 3*time.Minute)
	caughtUp := time.Since(restarted)
	f.step("until caught up")
	arch.Term()
	if err := arch.Wait(time.Minute); err != nil {
		t.Errorf("the archiver did not stop cleanly: %v", err)
	}
	logs := arch.Logs()

	failures := errsDuring - errsBefore
	f.note("archiver while PostgreSQL was down (%.1f s): %.0f failed steps (spillway_archiver_errors_total); "+
		"lag (spillway_archiver_lag_seconds, every 500 ms) %s", down.Seconds(), failures, lagRange(lags))
	f.note("`archiver status` while PostgreSQL was down: %s", during.summary)
	f.note("`archiver status` right after PostgreSQL was back: %s", after.summary)
	f.note("caught up %.1f s after PostgreSQL was back (the load ran 2 s of it)", caughtUp.Seconds())
	f.checkArchive(es, pg, logs)

	// Ingest and search answered as before.
	for _, search := range []bool{false, true} {
		want := map[bool]string{false: "201", true: "200"}[search]
		f.tr.mu.Lock()
		byPhase := f.tr.byPhase
		if search {
			byPhase = f.tr.srPhase
		}
		for status, n := range byPhase["outage"] {
			if status != want {
				t.Errorf("while PostgreSQL was down, %d answers %s from %s", n, status, map[bool]string{false: "ingest", true: "search"}[search])
			}
		}
		f.tr.mu.Unlock()
	}
	// The archiver noticed, backed off, and said how far behind it was.
	if failures < 1 {
		t.Error("the archiver counted no failed step while PostgreSQL was down")
	}
	// Backing off from 100 ms, doubling up to backoff_max: about log2(max/100 ms) attempts, then
	// one per backoff_max; a retry loop without backoff would fail thousands of times.
	if limit := 2 * (down.Seconds()/backoffMax.Seconds() + math.Log2(float64(backoffMax/(100*time.Millisecond))) + 2); failures > limit {
		t.Errorf("%.0f failed steps in %.1f s: more than backing off to %s allows (%.0f)", failures, down.Seconds(), backoffMax, limit)
	}
	if len(lags) < 2 || lags[len(lags)-1] <= lags[0] || lags[len(lags)-1] <= 0 {
		t.Errorf("the lag did not grow while PostgreSQL was down: %v", lags)
	}
	if after.err != nil {
		t.Errorf("`archiver status` failed once PostgreSQL was back: %v", after.err)
	}
}

// statusRun is one `archiver status --json` run.
type statusRun struct {
	summary string
	err     error
}

// archiverStatus runs `archiver status --json` against the stores and summarises it.
func archiverStatus(t *testing.T, es config.Elasticsearch, pg config.Postgres) statusRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Build(t, "cmd/archiver"), "status", "--json")
	cmd.Env = testenv.Env(archiverEnv(es, pg)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		var rec struct {
			Err string `json:"err"`
		}
		if json.Unmarshal([]byte(msg), &rec) == nil && rec.Err != "" {
			msg = rec.Err // the JSON log line's error
		}
		return statusRun{summary: fmt.Sprintf("failed (%v): %s", err, msg), err: fmt.Errorf("%v: %s", err, msg)}
	}
	var rep struct {
		LagSeconds float64 `json:"lag_seconds"`
		BehindOps  int64   `json:"behind_ops"`
		Rows       int64   `json:"rows_archived"`
		LastError  string  `json:"last_error"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return statusRun{summary: "unreadable: " + err.Error(), err: err}
	}
	s := fmt.Sprintf("lag %.1f s, %d operations behind, %d rows archived", rep.LagSeconds, rep.BehindOps, rep.Rows)
	if last := rep.LastError; last != "" {
		s += fmt.Sprintf(", last error %q", last[:min(len(last), 200)])
	}
	return statusRun{summary: s}
}

func lagRange(lags []float64) string {
	if len(lags) == 0 {
		return "not read"
	}
	top := 0.0
	for _, v := range lags {
		top = max(top, v)
	}
	return fmt.Sprintf("from %.1f s to %.1f s over %d samples (max %.1f s)", lags[0], lags[len(lags)-1], len(lags), top)
}
