package faults

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/archive/archivetest"
	"github.com/spillway/spillway/pkg/testenv"
)

// kill -9 of ingest during load, again and again, restarted each time on the same address
// while the clients keep sending. A 201 promises the events are durable in Elasticsearch
// before the answer; a crash right after must not take any back. The archiver runs beside it
// all along: once it has caught up, PostgreSQL holds every acknowledged event exactly once.
func TestFaultIngestKill9(t *testing.T) {
	kills := pick(3, 10)
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-faults")
	cfg := loadConfig("")
	f := newFault(t, "ingest kill -9", fmt.Sprintf(
		"Ingest killed with SIGKILL %d times at random moments (1–3 s after each restart) and restarted on the same address, "+
			"under an open-loop load of %.0f requests/s × %d events (201 mode) and 4 clients that resend each 10-event batch until "+
			"it is acknowledged; the archiver runs beside it and is then left to catch up.",
		kills, cfg.Rate, cfg.EventsPerRequest))
	a := addr(t)
	ing := startIngest(t, esCfg, a)
	all := []*service{ing}
	arch := startArchiver(t, esCfg, pgCfg)
	cfg.IngestURL = ing.URL
	ld := startLoad(f.tr, cfg)
	rt := startRetriers(f.tr, ing.URL, 4, 10)
	var atKill []int
	for i := 0; i < kills; i++ {
		before := f.tr.acks.count()
		time.Sleep(jitter(time.Second, 3*time.Second))
		waitAcks(t, f.tr, 1) // the process being killed has acknowledged work
		ing.Kill()
		atKill = append(atKill, f.tr.acks.count()-before)
		ing = startIngest(t, esCfg, a)
		all = append(all, ing)
	}
	time.Sleep(2 * time.Second) // the last instance serves a while too
	ld.Stop(t)
	f.note("%s", rt.Stop(t))
	f.note("events acknowledged by each killed instance: %v", atKill)
	f.note("requests without an answer (cut by the kills or refused while ingest was down): %d", f.tr.statusCount("error"))
	if f.tr.statusCount("error") == 0 {
		t.Error("no request was cut or refused: the kills interrupted nothing")
	}
	archivetest.WaitCaughtUp(t, es, pg, 3*time.Minute)
	f.note503(all...)
	f.check(es, pg)
	if !t.Failed() {
		archivetest.CheckExactlyOnce(t, es, pg) // the archive's checkpoint accounting adds up too
	}
	arch.Term()
	if err := arch.Wait(time.Minute); err != nil {
		t.Errorf("archiver did not stop cleanly: %v", err)
	}
}

var drainingRE = regexp.MustCompile(`"msg":"draining"[^\n]*"async_requests":(\d+)`)

// SIGTERM of ingest during load in ack=async mode: a 202 is answered before the events are
// written, with the promise that they are written before the process exits. Each round sends
// async load, signals the process mid-stream, and requires a clean exit; afterwards every
// event that got a 202 must be in Elasticsearch.
func TestFaultIngestSIGTERMAsync(t *testing.T) {
	rounds := pick(1, 3)
	esCfg := testenv.ES(t)
	es, _ := archivetest.Stores(t, esCfg, testenv.PG(t), "spillway-faults")
	cfg := loadConfig("")
	cfg.Query = "ack=async"
	// A group-commit window longer than the default 5 ms keeps async events queued in the
	// process at any moment, so every SIGTERM finds writes the drain must finish.
	const flush = "500ms"
	f := newFault(t, "ingest SIGTERM, ack=async", fmt.Sprintf(
		"Ingest was sent SIGTERM %d time(s), each 2–4 s into an open-loop load of %.0f requests/s × %d events with ?ack=async (202 answered "+
			"before writing; ingest.bulk_flush_interval=%s so that events are queued when the signal comes); the clients keep "+
			"sending while it drains; a new instance serves each round.",
		rounds, cfg.Rate, cfg.EventsPerRequest, flush))
	var pending []string
	for r := 0; r < rounds; r++ {
		ing := startIngest(t, esCfg, addr(t), "SPILLWAY_INGEST_BULK_FLUSH_INTERVAL="+flush)
		cfg.IngestURL = ing.URL
		ld := startLoad(f.tr, cfg)
		time.Sleep(jitter(2*time.Second, 4*time.Second))
		waitAcks(t, f.tr, 1)
		ing.Term()
		err := ing.Wait(time.Minute)
		ld.Stop(t)
		if err != nil {
			t.Errorf("round %d: ingest did not exit cleanly after SIGTERM: %v", r+1, err)
		}
		logs := ing.Logs()
		if m := drainingRE.FindStringSubmatch(logs); m != nil {
			pending = append(pending, m[1])
		} else {
			t.Errorf("round %d: no drain in the log", r+1)
		}
		if strings.Contains(logs, "async events lost") {
			t.Errorf("round %d: ingest reports lost async events", r+1)
		}
	}
	f.note("async requests still being written when each drain began: %s", strings.Join(pending, ", "))
	total := 0
	for _, p := range pending {
		n, _ := strconv.Atoi(p)
		total += n
	}
	if total == 0 {
		t.Error("no async write was in flight at any SIGTERM: the drain had nothing to finish, the test showed nothing")
	}
	f.check(es, nil)
}
