package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

func archiverBinary(t *testing.T) string { return testenv.Build(t, "cmd/archiver") }

// env configures the binary for the test's prefix and schema, and nothing else of the caller's.
func env(esCfg config.Elasticsearch, pgCfg config.Postgres, extra ...string) []string {
	out := append(testenv.ESEnv(esCfg), testenv.PGEnv(pgCfg)...)
	out = append(out,
		"SPILLWAY_HTTP_ADDR=127.0.0.1:0",
		"SPILLWAY_ARCHIVER_POLL_INTERVAL=10ms",
		"SPILLWAY_ARCHIVER_BACKOFF_MAX=200ms",
		"SPILLWAY_ARCHIVER_BATCH_SIZE=20",
	)
	return testenv.Env(append(out, extra...)...)
}

func startProc(t *testing.T, environ []string, args ...string) *testenv.Process {
	t.Helper()
	return testenv.StartProcess(t, "archiver", archiverBinary(t), environ, args...)
}

// runCmd runs one command to completion and returns its exit status and output.
func runArchiver(t *testing.T, environ []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(archiverBinary(t), args...)
	cmd.Env = environ
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// Exactly once across kill -9: the archiver is killed at random moments while events are being
// indexed, restarted each time, and finally left to catch up. PostgreSQL must then hold
// exactly Elasticsearch's ids, and every checkpoint's row count must equal its shard's
// documents (a range skipped or counted twice would show there).
func TestKill9ExactlyOnce(t *testing.T) {
	esCfg := testenv.ES(t)
	esCfg.Shards = 2
	pgCfg := testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	environ := env(esCfg, pgCfg)
	w := archivetest.StartWriter(es, "k9", 3)
	kills := 5
	if !testenv.Short() {
		kills = 25
	}
	var progress []int
	var logs strings.Builder
	for i := 0; i < kills; i++ {
		p := startProc(t, environ)
		time.Sleep(time.Duration(150+rand.IntN(1200)) * time.Millisecond)
		p.Kill()
		logs.WriteString(p.Logs())
		progress = append(progress, len(archivetest.PGIDs(t, pg)))
	}
	total := w.Stop(t)
	t.Logf("rows archived at each kill: %v; events indexed: %d", progress, total)
	if progress[len(progress)-1] == 0 {
		t.Fatal("the archiver archived nothing before the kills: they interrupted no work")
	}
	final := startProc(t, environ)
	archivetest.WaitCaughtUp(t, es, pg, 2*time.Minute)
	final.Term()
	if err := final.Wait(time.Minute); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, final.Logs())
	}
	if n := archivetest.CheckExactlyOnce(t, es, pg); int64(n) != total {
		t.Fatalf("Elasticsearch has %d events, the writer indexed %d", n, total)
	}
	// Each process verified the last hour once after its first round, while events kept
	// arriving and with its predecessors killed mid-batch: no false alarm.
	logs.WriteString(final.Logs())
	if strings.Contains(logs.String(), "verify found a mismatch") {
		t.Fatalf("periodic verify reported a mismatch:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"verified"`) {
		t.Fatal("no process ever verified: the check above checked nothing")
	}
}

func TestCommands(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	// A minute before the hour: the events (base, and base a day back, minus up to 250 ms)
	// fall on exactly two UTC days even when the test runs in the first hour of a day.
	base := time.Now().UTC().Truncate(time.Hour).Add(-time.Minute)
	evs := archivetest.Events("cmd", 250, 2, base)
	if err := archivetest.Index(ctx, es, evs); err != nil {
		t.Fatal(err)
	}
	if err := es.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	environ := env(esCfg, pgCfg)
	from, to := base.Add(-48*time.Hour).Format(time.RFC3339), base.Add(time.Hour).Format(time.RFC3339)

	// Usage errors exit 2.
	for _, args := range [][]string{{"bogus"}, {"status", "--from", from}, {"verify", "--from", from}, {"backfill", "--from", "yesterday", "--to", to}, {"verify", "a", "b"}} {
		if code, _, stderr := runArchiver(t, environ, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
	if code, _, stderr := runArchiver(t, env(esCfg, pgCfg, "SPILLWAY_POSTGRES_MAX_CONNS=1"), "run"); code != 2 || !strings.Contains(stderr, "postgres.max_conns") {
		t.Errorf("run with one connection: exit %d: %s", code, stderr)
	}

	// Backfill without a terminal logs its progress.
	code, _, stderr := runArchiver(t, environ, "backfill", "--from", from, "--to", to)
	if code != 0 || !strings.Contains(stderr, `"msg":"backfill finished"`) || !strings.Contains(stderr, `"inserted":250`) {
		t.Fatalf("backfill: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr := runArchiver(t, environ, "verify", "--from", from, "--to", to)
	// Backfilled rows are ahead of the (absent) checkpoints: not a mismatch.
	if code != 0 || !strings.Contains(stdout, "OK: both stores agree") {
		t.Fatalf("verify after backfill: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Let the feed pass everything (skipping what backfill wrote), then lose two rows behind
	// its checkpoints: verify exits 1 and names them; --repair closes the gap.
	p := startProc(t, environ, "run")
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	p.Term()
	if err := p.Wait(time.Minute); err != nil {
		t.Fatalf("run: %v\n%s", err, p.Logs())
	}
	if _, err := archivetest.DB(t, pg).Exec(ctx, "DELETE FROM events WHERE id IN ($1, $2)", evs[10].ID, evs[11].ID); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runArchiver(t, environ, "verify", "--from", from, "--to", to)
	if code != 1 || !strings.Contains(stdout, "MISMATCH") || !strings.Contains(stdout, evs[10].ID) {
		t.Fatalf("verify with a gap: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runArchiver(t, environ, "verify", "--from", from, "--to", to, "--repair", "--bucket", "30m")
	if code != 0 || !strings.Contains(stdout, "repaired 2") {
		t.Fatalf("verify --repair: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ = runArchiver(t, environ, "verify", "--from", "-72h", "--to", "now"); code != 0 {
		t.Fatalf("verify after repair: exit %d\n%s", code, stdout)
	}

	code, stdout, _ = runArchiver(t, environ, "status", "--json")
	var st struct {
		Prefix         string  `json:"prefix"`
		RowsArchived   int64   `json:"rows_archived"`
		RowsBackfilled int64   `json:"rows_backfilled"`
		RowsRepaired   int64   `json:"rows_repaired"`
		LagSeconds     float64 `json:"lag_seconds"`
		Shards         []struct {
			Checkpoint       int64  `json:"checkpoint"`
			GlobalCheckpoint *int64 `json:"global_checkpoint"`
		} `json:"shards"`
		LastVerify *struct {
			Missing int64 `json:"missing"`
		} `json:"last_verify"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || code != 0 {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, stdout)
	}
	if st.Prefix != esCfg.IndexPrefix || st.RowsBackfilled != 250 || st.RowsRepaired != 2 || st.RowsArchived != 0 || st.LagSeconds != 0 ||
		len(st.Shards) != 2 || st.LastVerify == nil || st.LastVerify.Missing != 0 {
		t.Fatalf("status: %+v\n%s", st, stdout)
	}
	for _, s := range st.Shards {
		if s.GlobalCheckpoint == nil || s.Checkpoint != *s.GlobalCheckpoint {
			t.Fatalf("shard not caught up: %s", stdout)
		}
	}
	code, stdout, _ = runArchiver(t, environ, "status")
	if code != 0 || !strings.Contains(stdout, "leader") || !strings.Contains(stdout, "250 backfilled") || !strings.Contains(stdout, "CHECKPOINT") {
		t.Fatalf("status: exit %d\n%s", code, stdout)
	}
}

// `run` serves its metrics, health and readiness, and stops cleanly on SIGTERM.
func TestRunServesMetrics(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, _ := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	ctx := testenv.Context(t, time.Minute)
	if err := archivetest.Index(ctx, es, archivetest.Events("m", 30, 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	p := startProc(t, env(esCfg, pgCfg, fmt.Sprintf("SPILLWAY_HTTP_ADDR=127.0.0.1:%d", port)), "run")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	get := func(path string) (int, string) {
		res, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := get("/metrics")
		if code == 200 && strings.Contains(body, "spillway_archiver_rows_archived_total{origin=\"feed\"} 30") {
			for _, name := range []string{"spillway_archiver_batch_duration_seconds_bucket", "spillway_archiver_copy_bytes_total",
				"spillway_archiver_lag_seconds", "spillway_archiver_verify_mismatches", `spillway_archiver_pool_connections{state="in_use"}`,
				"spillway_archiver_pool_max_connections 4", "spillway_archiver_leader 1"} {
				if !strings.Contains(body, name) {
					t.Errorf("metrics lack %s", name)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed 30 archived rows: %d\n%s\n%s", code, body, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	p.Term()
	if err := p.Wait(time.Minute); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.Logs())
	}
	if !strings.Contains(p.Logs(), `"msg":"archiver stopped"`) {
		t.Fatalf("no clean stop in the log:\n%s", p.Logs())
	}
}
