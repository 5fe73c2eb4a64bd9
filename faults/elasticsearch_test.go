package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
)

// One private single-node cluster serves both faults that break Elasticsearch as a whole
// (a node takes a while to start on a busy machine); each fault has its own index prefix.
func TestFaultElasticsearch(t *testing.T) {
	node := testenv.StartES(t, 1, "512m").Nodes[0]
	t.Run("Stopped", func(t *testing.T) { testStopped(t, node) })
	t.Run("DiskFull", func(t *testing.T) {
		if !node.Running() { // the previous fault failed half-way
			node.Start(t)
		}
		testBlocked(t, node, "Elasticsearch disk full (index read-only)",
			"The private node's disk watermarks lowered to 1/2/3 % used, so that its disk counts as past the flood stage "+
				"(its disk monitor checks every 10 s, the shortest it allows), and `index.blocks.read_only_allow_delete: true` set on the event "+
				"indices through the settings API (what the node then keeps applying by itself)",
			"the watermarks restored and the block removed",
			func(indices string) {
				esMust(t, http.MethodPut, node.URL()+"/_cluster/settings", `{"persistent":{
					"cluster.routing.allocation.disk.threshold_enabled": true,
					"cluster.routing.allocation.disk.watermark.low": "1%",
					"cluster.routing.allocation.disk.watermark.high": "2%",
					"cluster.routing.allocation.disk.watermark.flood_stage": "3%",
					"cluster.info.update.interval": "10s"}}`)
				esMust(t, http.MethodPut, node.URL()+"/"+indices+"/_settings", `{"index.blocks.read_only_allow_delete": true}`)
			},
			func(indices string) {
				// Elasticsearch lifts the block by itself once the disk is below the high watermark
				// again; removing it too makes the recovery's start a known moment.
				esMust(t, http.MethodPut, node.URL()+"/_cluster/settings", `{"persistent":{
					"cluster.routing.allocation.disk.threshold_enabled": null,
					"cluster.routing.allocation.disk.watermark.low": null,
					"cluster.routing.allocation.disk.watermark.high": null,
					"cluster.routing.allocation.disk.watermark.flood_stage": null,
					"cluster.info.update.interval": null}}`)
				esMust(t, http.MethodPut, node.URL()+"/"+indices+"/_settings", `{"index.blocks.read_only_allow_delete": null}`)
			})
	})
	t.Run("WriteBlock", func(t *testing.T) {
		if !node.Running() {
			node.Start(t)
		}
		testBlocked(t, node, "Elasticsearch index write-blocked",
			"`index.blocks.write: true` (how an operator makes an index read-only) set on the event indices of the private node",
			"the block removed",
			func(indices string) {
				esMust(t, http.MethodPut, node.URL()+"/"+indices+"/_settings", `{"index.blocks.write": true}`)
			},
			func(indices string) {
				esMust(t, http.MethodPut, node.URL()+"/"+indices+"/_settings", `{"index.blocks.write": null}`)
			})
	})
}

// Elasticsearch stopped during load. While it is down, ingest must answer at once (503 from
// its breaker, or 429 from its in-flight budget) rather than hold requests and memory; when it
// is back, ingest must resume by itself, and nothing it acknowledged may be missing.
func testStopped(t *testing.T, node *testenv.ESNode) {
	outage := pick(10*time.Second, 30*time.Second)
	esCfg := testenv.ESAt(t, node.URL())
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig("")
	f := newFault(t, "Elasticsearch stopped", fmt.Sprintf(
		"The (private, single-node) Elasticsearch stopped with SIGTERM for %s, then started again, under an open-loop load of "+
			"%.0f requests/s × %d events and %s; one-event probes every 200 ms while it is down; ingest is not restarted.",
		outage, cfg.Rate, cfg.EventsPerRequest, retriersText(4)))
	ing := startIngest(t, esCfg, addr(t))
	p := newProber(ing.URL, f.tr)
	warmUp(t, f, p)
	rss := sampleRSS(ing.Pid(), "before")
	cfg.IngestURL = ing.URL
	ld := startLoad(f.tr, cfg)
	rt := f.startRetriers(ing.URL, 4, client.AckDurable)
	waitAcks(t, f.tr, 500)

	f.step("load before the stop")
	rss.phase("outage")
	f.tr.setPhase("stopping")
	node.Stop(t)
	stopped := time.Now()
	f.step("node stop (SIGTERM until exit)")
	f.tr.setPhase("outage")
	ctx, stopProbes := context.WithCancel(context.Background())
	p.every(ctx, "outage", 200*time.Millisecond)
	time.Sleep(outage)
	stopProbes()
	p.wait() // every outage probe answered before the node can answer again
	f.step("stopped")
	f.tr.setPhase("restarting")
	node.Start(t)
	f.step("node start (until its HTTP port opens)")
	rss.phase("recovery")
	f.tr.setPhase("recovery")
	p.until(t, "recovery", http.StatusCreated, 3*time.Minute)
	back := time.Since(stopped)
	f.step("until the first 201")
	rss.phase("after")
	f.tr.setPhase("after")
	waitAcks(t, f.tr, 500) // the load flows again, not just a probe
	time.Sleep(2 * time.Second)
	ld.Stop(t)
	f.note("%s", rt.Stop(t))
	maxRSS, rssSummary := rss.finish()

	if !ing.Running() {
		t.Fatal("ingest exited during the outage")
	}
	outageProbes := p.phase("outage")
	f.note("while Elasticsearch was down: %s", describe(outageProbes))
	f.note("first 201 %.1f s after the stop (%s outage + the node's start), %d probes after the start until then", back.Seconds(), outage, len(p.phase("recovery")))
	f.note("%s", rssSummary)
	f.note503(ing)
	f.check(es, nil)

	if len(outageProbes) == 0 {
		t.Fatal("no probe was answered during the outage")
	}
	for _, pr := range outageProbes {
		if pr.Status != http.StatusServiceUnavailable && pr.Status != http.StatusTooManyRequests {
			t.Errorf("during the outage a probe got %d %s %q %s; want 503 or 429", pr.Status, pr.Code, pr.Message, pr.Err)
			break
		}
	}
	for status := range map[string]bool{"400": true, "500": true, "502": true} {
		if n := f.tr.statusCount(status); n > 0 {
			t.Errorf("the load got %d answers %s", n, status)
		}
	}
	// Bounded memory: what ingest holds for requests is capped by its in-flight budget
	// (ingest.inflight_max_bytes, as the process is configured: the defaults); an outage must not
	// let it grow past what the budget allows. A held request exists at most four times over —
	// its body, its decoded events, their bulk documents, the bulk request's buffer — and the
	// garbage collector lets the heap grow to twice what is live (GOGC=100): eight budgets above
	// the process before the load.
	budget := int64(testenv.LoadConfig(t, config.RoleIngest).Ingest.InflightMaxBytes)
	limit := rss.max("before") + 8*budget
	if maxRSS > limit {
		t.Errorf("ingest's RSS reached %.0f MiB, above the bound of %.0f MiB (%.0f MiB before the load + 8 × the in-flight budget of %.0f MiB)",
			float64(maxRSS)/(1<<20), float64(limit)/(1<<20), float64(rss.max("before"))/(1<<20), float64(budget)/(1<<20))
	}
}

// An index Elasticsearch will not write to (a block: read_only_allow_delete on a full disk, or
// a write block an operator set): ingest must answer 503 — the events are not stored, the
// cause is on the server's side, and retrying later is the right thing for the client — not
// 400 (the events are valid: a client would drop them) and not a 201 for events that were
// not written; and it must accept events again once the block is lifted.
func testBlocked(t *testing.T, node *testenv.ESNode, name, blockHow, unblockHow string, block, unblock func(indices string)) {
	hold := pick(15*time.Second, 30*time.Second)
	esCfg := testenv.ESAt(t, node.URL())
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig("")
	f := newFault(t, name, fmt.Sprintf(
		"%s, for at least %s and until 5 probes were answered, under an open-loop load of %.0f "+
			"requests/s × %d events and %s, with one-event probes every 500 ms; then %s.",
		blockHow, hold, cfg.Rate, cfg.EventsPerRequest, retriersText(4), unblockHow))
	ing := startIngest(t, esCfg, addr(t))
	p := newProber(ing.URL, f.tr)
	warmUp(t, f, p)
	cfg.IngestURL = ing.URL
	ld := startLoad(f.tr, cfg)
	rt := f.startRetriers(ing.URL, 4, client.AckDurable)
	waitAcks(t, f.tr, 500)

	indices := esCfg.IndexPrefix + "-*"
	block(indices)
	blocked := time.Now()
	f.tr.setPhase("blocked")
	ctx, stopProbes := context.WithCancel(context.Background())
	p.every(ctx, "blocked", 500*time.Millisecond)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Since(blocked) < hold || answered(p.phase("blocked")) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 5 probes answered within 3 minutes of the block: %s", describe(p.phase("blocked")))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopProbes()
	p.wait() // all answered while the block held
	unblock(indices)
	f.tr.setPhase("cleared")
	p.until(t, "cleared", http.StatusCreated, 2*time.Minute)
	waitAcks(t, f.tr, 500)
	time.Sleep(2 * time.Second)
	ld.Stop(t)
	f.note("%s", rt.Stop(t))

	blockedProbes := p.phase("blocked")
	f.note("while the block held: %s", describe(blockedProbes))
	f.note("after the block was removed: %s", describe(p.phase("cleared")))
	f.note503(ing)
	f.check(es, nil)
	for _, pr := range blockedProbes {
		if pr.Status != http.StatusServiceUnavailable && pr.Status != http.StatusTooManyRequests {
			t.Errorf("while blocked a probe got %d %s %q %s; want 503 (or 429)", pr.Status, pr.Code, pr.Message, pr.Err)
			break
		}
	}
	if n := count(blockedProbes, http.StatusServiceUnavailable); n == 0 {
		t.Error("no probe got a 503 while the index was blocked")
	}
	if n := f.tr.statusCount("400"); n > 0 {
		t.Errorf("the load got %d answers 400 while the index was blocked: the events are valid", n)
	}
}

func answered(probes []probe) int {
	n := 0
	for _, pr := range probes {
		if pr.Status != 0 {
			n++
		}
	}
	return n
}

func count(probes []probe, status int) int {
	n := 0
	for _, pr := range probes {
		if pr.Status == status {
			n++
		}
	}
	return n
}

// A three-node cluster on loopback with one replica: the node holding the primary of the
// current daily index is killed (SIGKILL) during load. Elasticsearch promotes the replica,
// which holds every acknowledged event (a bulk item is acknowledged once every in-sync copy
// has it); ingest and search, given all three nodes, keep serving. Some 503s while the cluster
// fails over are acceptable and reported; a lost acknowledged event is not.
func TestFaultElasticsearchNodeLoss(t *testing.T) {
	after := pick(5*time.Second, 30*time.Second)
	start := time.Now()
	cluster := testenv.StartES(t, 3, "512m")
	started := time.Since(start)
	esCfg := testenv.ESAt(t, cluster.Nodes[0].URL())
	esCfg.URLs = cluster.URLs()
	esCfg.Replicas = "1"
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig("")
	// Durable writes to a primary and its replica in three JVMs on two shared cores: at the
	// full form's 2,000 events/s the cluster fell behind before any fault (every request 503 at
	// ingest.ack_timeout), which hid the failover. 500 events/s it sustains.
	cfg.Rate, cfg.EventsPerRequest = 100, 5
	cfg.SearchRate = pick(20.0, 50.0)
	f := newFault(t, "Elasticsearch node holding a primary killed", fmt.Sprintf(
		"A 3-node cluster on loopback, 1 replica (elasticsearch.replicas=1); the node holding the primary of the current daily "+
			"index killed with SIGKILL during an open-loop load of %.0f requests/s × %d events and %.0f searches/s, beside %s; "+
			"the load continues for %s after ingest and search answer again; the node stays down for the check.",
		cfg.Rate, cfg.EventsPerRequest, cfg.SearchRate, retriersText(4), after))
	f.steps = append(f.steps, fmt.Sprintf("3 nodes started %.1f s", started.Seconds()))
	ing := startIngest(t, esCfg, addr(t))
	search := startSearch(t, esCfg)
	f.step("ingest and search started")
	p := newProber(ing.URL, f.tr)
	warmUp(t, f, p)
	index := es.IndexFor(time.Now())
	base := cluster.Nodes[0].URL()
	esMust(t, http.MethodGet, base+"/_cluster/health/"+index+"?wait_for_status=green&timeout=120s", "")
	f.step("index green")
	cfg.IngestURL, cfg.SearchURL = ing.URL, search.URL
	ld := startLoad(f.tr, cfg)
	rt := f.startRetriers(ing.URL, 4, client.AckDurable)
	waitAcks(t, f.tr, 500)
	f.step("load flowing")
	primary, replica := shardNodes(t, base, index)
	var victim *testenv.ESNode
	for _, n := range cluster.Nodes {
		if n.Name == primary {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("primary of %s on %q, not one of the cluster's nodes", index, primary)
	}
	master := strings.TrimSpace(string(esMust(t, http.MethodGet, base+"/_cat/master?h=node", "")))
	waitAcks(t, f.tr, 200)
	f.step("more load")
	f.tr.setPhase("after the kill")
	victim.Kill(t)
	killed := time.Now()
	f.step("kill")
	var alive *testenv.ESNode
	for _, n := range cluster.Nodes {
		if n != victim {
			alive = n
			break
		}
	}
	p.until(t, "after the kill", http.StatusCreated, 3*time.Minute)
	firstAck := time.Since(killed)
	searchOK := searchUntil200(t, search.URL, 3*time.Minute)
	f.step("ingest and search answer")
	time.Sleep(after)
	ld.Stop(t)
	f.note("%s", rt.Stop(t))
	f.step("load after the kill")

	newPrimary, _ := shardNodes(t, alive.URL(), index)
	health := esMust(t, http.MethodGet, alive.URL()+"/_cluster/health/"+index, "")
	var h struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(health, &h)
	f.note("killed %s, which held the primary of %s (replica on %s; the elected master was %s); the primary is now on %s, the index %s",
		victim.Name, index, replica, master, newPrimary, h.Status)
	f.note("after the kill: %s; first 201 after %.1f s; search answered 200 %.1f s after the kill",
		describe(p.phase("after the kill")), firstAck.Seconds(), searchOK.Sub(killed).Seconds())
	f.note503(ing)
	f.check(es, nil)
	if !ing.Running() || !search.Running() {
		t.Error("ingest or search exited after the node loss")
	}
	if n := f.tr.statusCount("400"); n > 0 {
		t.Errorf("the load got %d answers 400", n)
	}
}

// shardNodes returns the nodes holding the primary and the replica of shard 0 of index.
func shardNodes(t *testing.T, base, index string) (primary, replica string) {
	t.Helper()
	var rows []struct {
		Shard, Prirep, State, Node string
	}
	b := esMust(t, http.MethodGet, base+"/_cat/shards/"+index+"?format=json&h=shard,prirep,state,node", "")
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatalf("cat shards: %v %s", err, b)
	}
	for _, r := range rows {
		if r.Shard != "0" || r.State != "STARTED" {
			continue
		}
		if r.Prirep == "p" {
			primary = r.Node
		} else {
			replica = r.Node
		}
	}
	if primary == "" {
		t.Fatalf("no started primary of %s: %s", index, b)
	}
	return primary, replica
}

// searchUntil200 queries search until it answers 200 and returns when; the deadline guards
// against a hang.
func searchUntil200(t *testing.T, base string, timeout time.Duration) time.Time {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(timeout)
	q := url.Values{"clientId": {"probe"}, "order": {"desc"}, "limit": {strconv.Itoa(10)}}
	var last string
	for {
		res, err := client.Get(base + "/api/v1/events?" + q.Encode())
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return time.Now()
			}
			last = res.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("search did not answer 200 within %s after the node loss (last: %s)", timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
