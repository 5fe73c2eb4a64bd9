package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/esstore"
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
			"under an open-loop load of %.0f requests/s × %d events (201 mode) and %s; the archiver runs beside it and is then "+
			"left to catch up.",
		kills, cfg.Rate, cfg.EventsPerRequest, retriersText(4)))
	a := addr(t)
	ing := startIngest(t, esCfg, a)
	all := []*service{ing}
	arch := startArchiver(t, esCfg, pgCfg)
	cfg.IngestURL = ing.URL
	ld := startLoad(f.tr, cfg)
	rt := f.startRetriers(ing.URL, 4, client.AckDurable)
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
// event that got a 202 must be in Elasticsearch. The retrying clients (also ack=async) run
// across the rounds: every instance serves on the same address, so what one refused while it
// drained, they resend to the next.
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
			"before writing; ingest.bulk_flush_interval=%s so that events are queued when the signal comes), beside %s "+
			"(with ?ack=async too); the clients keep sending while it drains; a new instance serves each round on the same "+
			"address, and a last one, stopped the same way, serves the retrying clients until they are done.",
		rounds, cfg.Rate, cfg.EventsPerRequest, flush, retriersText(4)))
	var pending []string
	a, flushEnv := addr(t), "SPILLWAY_INGEST_BULK_FLUSH_INTERVAL="+flush
	var rt *retriers
	for r := 0; r < rounds; r++ {
		ing := startIngest(t, esCfg, a, flushEnv)
		if rt == nil {
			rt = f.startRetriers(ing.URL, 4, client.AckAsync)
		}
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
	// What the last drain refused, the retrying clients resend to a last instance; its 202s
	// are kept by its own drain.
	last := startIngest(t, esCfg, a, flushEnv)
	f.note("%s", rt.Stop(t))
	last.Term()
	if err := last.Wait(time.Minute); err != nil {
		t.Errorf("the last instance did not exit cleanly after SIGTERM: %v", err)
	}
	if strings.Contains(last.Logs(), "async events lost") {
		t.Error("the last instance reports lost async events")
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

// SIGTERM of ingest under load in the default mode, where a 201 means the events are durable.
// A graceful stop must not turn an accepted request into a failure, nor leave a new one without
// directions: /readyz fails (a load balancer stops sending), requests that arrive after the
// signal get 503 with Retry-After (the client resends elsewhere, with the same ids) for
// http.drain_delay and are then refused, requests in flight finish with 201, and every 201 is
// stored. The group-commit window is widened to 1 s so that requests are held in the process
// when the signal comes. The retrying clients run across the rounds: every instance serves on
// the same address, so they resend to the next one what a draining one refused.
func TestFaultIngestSIGTERM(t *testing.T) {
	rounds := pick(1, 3)
	esCfg := testenv.ES(t)
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const flush, delay = "1s", "3s"
	cfg := loadConfig("")
	f := newFault(t, "ingest SIGTERM, default mode", fmt.Sprintf(
		"Ingest was sent SIGTERM %d time(s) under an open-loop load of %.0f requests/s × %d events (201 mode; "+
			"ingest.bulk_flush_interval=%s, so that requests wait in the process for their bulk request; http.drain_delay=%s), "+
			"with one-event probes every 20 ms on fresh connections until the listener closed; after the signal, /readyz was "+
			"asked until it failed and one more event posted; beside %s. A new instance serves each round on the same address, "+
			"and a last one serves the retrying clients until they are done.",
		rounds, cfg.Rate, cfg.EventsPerRequest, flush, delay, retriersText(4)))
	var byRound, late []string
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	a, env := addr(t), []string{"SPILLWAY_INGEST_BULK_FLUSH_INTERVAL=" + flush, "SPILLWAY_HTTP_DRAIN_DELAY=" + delay}
	var rt *retriers
	for r := 0; r < rounds; r++ {
		ing := startIngest(t, esCfg, a, env...)
		if rt == nil {
			rt = f.startRetriers(ing.URL, 4, client.AckDurable)
		}
		cfg.IngestURL = ing.URL
		ld := startLoad(f.tr, cfg)
		p := newProber(ing.URL, f.tr)
		p.client = hc
		ctx, stopProbes := context.WithCancel(context.Background())
		phase := fmt.Sprintf("round %d", r+1)
		p.every(ctx, phase, 20*time.Millisecond)
		waitAcks(t, f.tr, 200)
		time.Sleep(jitter(0, time.Second)) // a random point of the group-commit window
		signalled := time.Now()
		ing.Term()
		var readyz string
		waitFor(t, "/readyz to fail", func() bool {
			res, err := hc.Get(ing.URL + "/readyz")
			if err != nil {
				t.Fatalf("round %d: /readyz refused before it failed (%v): the listener closed without draining", r+1, err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			readyz = fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(b)))
			return res.StatusCode == http.StatusServiceUnavailable
		})
		post := p.post("after the signal")
		// Then the listener closes: connections are refused.
		waitFor(t, "ingest's listener to close", func() bool {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
		stopProbes()
		p.wait()
		err := ing.Wait(time.Minute)
		ld.Stop(t)
		if err != nil {
			t.Errorf("round %d: ingest did not exit cleanly after SIGTERM: %v", r+1, err)
		}
		if !strings.Contains(readyz, `"draining"`) {
			t.Errorf("round %d: /readyz after the signal answered %s, want 503 draining", r+1, readyz)
		}
		if post.Status != http.StatusServiceUnavailable || post.RetryAfter == "" || post.Code != "unavailable" {
			t.Errorf("round %d: a request after the signal was answered %d %s %q (Retry-After %q) %s, want 503 unavailable with Retry-After",
				r+1, post.Status, post.Code, post.Message, post.RetryAfter, post.Err)
		}
		late = append(late, fmt.Sprintf("/readyz %s; a new request %d %s (Retry-After: %s) %q", readyz, post.Status, post.Code, post.RetryAfter, post.Message))
		var after, drained, refused int
		for _, pr := range p.phase(phase) {
			switch {
			case pr.Status == http.StatusCreated:
				if pr.Answered.After(signalled) {
					after++
				}
			case pr.Status == http.StatusServiceUnavailable && pr.RetryAfter != "" && strings.Contains(pr.Message, "shutting down"):
				drained++
			case pr.Status == 0:
				refused++ // sent once the listener had closed
			default:
				t.Errorf("round %d: a probe was answered %d %s %q (Retry-After %q)", r+1, pr.Status, pr.Code, pr.Message, pr.RetryAfter)
			}
		}
		if after == 0 {
			t.Errorf("round %d: no request was in flight at the signal (no 201 answered after it): the test showed nothing", r+1)
		}
		if drained == 0 {
			t.Errorf("round %d: no probe got the draining 503 during http.drain_delay", r+1)
		}
		byRound = append(byRound, fmt.Sprintf("%d answered 201 after the signal (in flight at it), %d answered 503 draining with Retry-After, "+
			"%d refused once the listener had closed", after, drained, refused))
	}
	startIngest(t, esCfg, a, env...) // what the last drain refused, the retrying clients resend here
	f.note("%s", rt.Stop(t))
	if rt.answered("503") == 0 {
		t.Error("no attempt of the retrying clients was answered 503 by a draining instance: their resend was not exercised")
	}
	f.note("one-event probes on fresh connections, by round: %s", strings.Join(byRound, "; "))
	f.note("after the signal: %s", strings.Join(late, "; "))
	f.check(es, nil)
	for status, n := range f.tr.status {
		if status != "201" && status != "503" && status != "error" {
			t.Errorf("the load got %d answers %s", n, status)
		}
	}
}
