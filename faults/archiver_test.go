package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/pgstore"
)

// kill -9 of the archiver at random points, and crashes of PostgreSQL (immediate shutdown)
// while it works, during ingest load. Every batch commits its rows with its checkpoint, so a
// batch cut anywhere is either all in or all out, and the next process resumes from the
// checkpoint: once the last archiver has caught up, PostgreSQL holds exactly Elasticsearch's
// events — each acknowledged one, each once — and the checkpoints account for every row.
// (pkg/archive and cmd/archiver test the same with a direct writer; this one runs the whole
// path, from the clients' 201s to the rows.)
func TestFaultArchiverKill9PostgresRestart(t *testing.T) {
	kills := pick(4, 15)
	cluster := testenv.StartPG(t)
	esCfg := testenv.ES(t)
	esCfg.Shards = 2 // two feeds with their own checkpoints
	pgCfg := testenv.PGAt(t, cluster.URL())
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-faults")
	cfg := loadConfig("")
	f := newFault(t, "archiver kill -9, PostgreSQL crash", fmt.Sprintf(
		"The archiver killed with SIGKILL %d times at random points (0.3–2.5 s after each start); in every other run the "+
			"(private) PostgreSQL is crashed (`pg_ctl stop -m immediate`) and restarted under it first; ingest load of %.0f "+
			"requests/s × %d events and %s throughout (2 shards); then a last archiver catches up and stops with SIGTERM.",
		kills, cfg.Rate, cfg.EventsPerRequest, retriersText(4)))
	ing := startIngest(t, esCfg, addr(t))
	cfg.IngestURL = ing.URL
	ld := startLoad(f.tr, cfg)
	rt := f.startRetriers(ing.URL, 4, client.AckDurable)
	waitAcks(t, f.tr, 200)

	var progress []int
	var logs strings.Builder
	restarts := 0
	for i := 0; i < kills; i++ {
		a := startArchiver(t, esCfg, pgCfg)
		time.Sleep(jitter(300*time.Millisecond, 1500*time.Millisecond))
		if i%2 == 1 {
			cluster.Restart(t, true, jitter(100*time.Millisecond, time.Second))
			restarts++
			time.Sleep(jitter(0, time.Second)) // killed while reconnecting, or after
		}
		a.Kill()
		logs.WriteString(a.Logs())
		progress = append(progress, len(retry(t, "count archived rows", func(ctx context.Context) ([]string, error) { return pgIDsOf(ctx, archivetest.DB(t, pg)) })))
	}
	ld.Stop(t)
	f.note("%s", rt.Stop(t))
	f.note("rows in PostgreSQL after each kill: %v; PostgreSQL crashed %d times", progress, restarts)
	if progress[len(progress)-1] == 0 {
		t.Fatal("nothing was archived before the last kill: the kills interrupted no work")
	}

	final := startArchiver(t, esCfg, pgCfg)
	archivetest.WaitCaughtUp(t, es, pg, 3*time.Minute)
	final.Term()
	if err := final.Wait(time.Minute); err != nil {
		t.Errorf("the last archiver did not stop cleanly: %v", err)
	}
	logs.WriteString(final.Logs())
	f.checkArchive(es, pg, logs.String())
}

// kill -9 of the archiver that holds the lease, under ingest load, while a second archiver
// stands by waiting for it. The lease is a session-level advisory lock: PostgreSQL releases it
// as soon as the dead process's connection closes, and the standby, which asks for it every poll
// interval (50 ms here), takes over. No batch may be lost or written twice across the handover:
// once the last leader has caught up, PostgreSQL holds exactly Elasticsearch's events, and the
// checkpoints account for every row. How long the takeover took is measured, not asserted.
func TestFaultArchiverLeaderKill9StandbyTakesOver(t *testing.T) {
	kills := pick(1, 4)
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-faults")
	cfg := loadConfig("")
	f := newFault(t, "archiver leader kill -9, standby takes over", fmt.Sprintf(
		"Two archivers run against the same schema; the one holding the lease is killed with SIGKILL %d time(s) while "+
			"it archives, under an open-loop ingest load of %.0f requests/s × %d events and %s; each time the standby must "+
			"take the lease and go on, and a new standby is started; then the load stops, the last leader catches up and "+
			"stops with SIGTERM. Archivers poll the lease every 50 ms.", kills, cfg.Rate, cfg.EventsPerRequest, retriersText(4)))
	ing := startIngest(t, esCfg, addr(t))
	cfg.IngestURL = ing.URL
	ld := startLoad(f.tr, cfg)
	rt := f.startRetriers(ing.URL, 4, client.AckDurable)
	waitAcks(t, f.tr, 200)

	leader := startArchiver(t, esCfg, pgCfg)
	waitLog(t, leader, `"msg":"leading"`, 1)
	standby := startArchiver(t, esCfg, pgCfg)
	waitLog(t, standby, `"msg":"standing by`, 1)
	f.step("load, leader and standby started")
	var takeover, firstBatch []string
	var logs strings.Builder
	for i := 0; i < kills; i++ {
		// The leader is working: it has committed rows since the previous handover.
		before := archivedRows(t, pg)
		waitFor(t, "the leader's next batches", func() bool { return archivedRows(t, pg) > before })
		time.Sleep(jitter(0, 500*time.Millisecond)) // a random point of its work
		leader.Kill()
		killed := time.Now()
		waitLog(t, standby, `"msg":"leading"`, 1)
		took := time.Since(killed)
		// The dead leader's session has ended (its lock is free): nothing of it can commit now.
		at := archivedRows(t, pg)
		waitFor(t, "the new leader's first batch", func() bool { return archivedRows(t, pg) > at })
		takeover = append(takeover, fmt.Sprintf("%.0f ms", took.Seconds()*1000))
		firstBatch = append(firstBatch, fmt.Sprintf("%.0f ms", time.Since(killed).Seconds()*1000))
		logs.WriteString(leader.Logs())
		leader, standby = standby, startArchiver(t, esCfg, pgCfg)
		waitLog(t, standby, `"msg":"standing by`, 1)
	}
	f.step("kills")
	time.Sleep(time.Second) // the last leader archives under load too
	ld.Stop(t)
	f.note("%s", rt.Stop(t))
	f.note("takeover (SIGKILL of the leader until the standby logged that it leads), after each kill: %s; "+
		"until the new leader's first batch was committed: %s", strings.Join(takeover, ", "), strings.Join(firstBatch, ", "))

	archivetest.WaitCaughtUp(t, es, pg, 3*time.Minute)
	for _, a := range []*service{leader, standby} {
		a.Term()
		if err := a.Wait(time.Minute); err != nil {
			t.Errorf("an archiver did not stop cleanly: %v", err)
		}
		logs.WriteString(a.Logs())
	}
	f.checkArchive(es, pg, logs.String())
}

// archivedRows adds up the rows the checkpoints account for.
func archivedRows(t *testing.T, pg *pgstore.Store) int64 {
	t.Helper()
	cps := retry(t, "read checkpoints", func(ctx context.Context) ([]pgstore.Checkpoint, error) { return pg.Checkpoints(ctx) })
	var n int64
	for _, c := range cps {
		n += c.Rows
	}
	return n
}
