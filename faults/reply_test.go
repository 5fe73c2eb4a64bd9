package faults

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/netproxy"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/esstore"
)

// A reply lost after the write, on both hops. Between the clients and ingest, a proxy forwards
// every request and cuts the connection as one reply in four begins: ingest has stored the
// events and answered 201, the client sees a broken connection and resends the batch with the
// same ids. Between ingest and Elasticsearch, another proxy does the same to one `_bulk` reply
// in four: Elasticsearch has stored the items, ingest sees a failed bulk request and sends them
// again. Both resends must find the events already stored (counted as duplicates in the answers)
// and nothing may be stored twice.
func TestFaultReplyLost(t *testing.T) {
	const every = 4
	minCuts, minLoad := pick(int64(20), int64(200)), pick(5*time.Second, 30*time.Second)
	clients := pick(8, 16)
	esCfg := testenv.ES(t)
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bulks, posts atomic.Int64
	toES, err := netproxy.StartWith("127.0.0.1:0", strings.TrimPrefix(esCfg.URLs[0], "http://"), netproxy.Options{
		CutReply: func(line string) bool {
			return strings.HasPrefix(line, "POST ") && strings.Contains(line, "/_bulk") && bulks.Add(1)%every == 0
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { toES.Close() })
	viaProxy := esCfg
	viaProxy.URLs = []string{"http://" + toES.Addr()}

	f := newFault(t, "reply lost after the write", fmt.Sprintf(
		"Proxies lose one reply in %d after the request was served: between the clients and ingest (`POST /api/v1/events`: "+
			"the connection is cut as ingest's 201 begins) and between ingest and Elasticsearch (`_bulk`: cut as Elasticsearch's "+
			"answer begins). The clients are %s; ingest resends the items of a bulk request it got no answer for. The load runs "+
			"for at least %s and until each proxy has cut %d replies.", every, retriersText(clients), minLoad, minCuts))
	ing := startIngest(t, viaProxy, addr(t))
	toIngest, err := netproxy.StartWith("127.0.0.1:0", strings.TrimPrefix(ing.URL, "http://"), netproxy.Options{
		CutReply: func(line string) bool {
			return strings.HasPrefix(line, "POST /api/v1/events") && posts.Add(1)%every == 0
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { toIngest.Close() })

	rt := f.startRetriers("http://"+toIngest.Addr(), clients, client.AckDurable)
	start := time.Now()
	deadline := start.Add(3 * time.Minute) // a hang guard, not a bound
	for time.Since(start) < minLoad || toIngest.Cuts() < minCuts || toES.Cuts() < minCuts {
		if time.Now().After(deadline) {
			t.Fatalf("in 3 minutes the proxies cut %d replies of ingest and %d of Elasticsearch, want %d each",
				toIngest.Cuts(), toES.Cuts(), minCuts)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.note("%s", rt.Stop(t))
	f.step("load")
	f.note("replies cut: %d of %d answers of ingest to `POST /api/v1/events`, %d of %d answers of Elasticsearch to `_bulk`",
		toIngest.Cuts(), posts.Load(), toES.Cuts(), bulks.Load())
	f.note503(ing)
	f.check(es, nil)
	if rt.stats.DuplicatesOnRetry == 0 {
		t.Error("no resent batch found its events already stored: the lost replies of ingest were not exercised")
	}
	if rt.stats.Duplicates == rt.stats.DuplicatesOnRetry {
		t.Error("no answer counted events ingest had resent after a lost `_bulk` reply: that path was not exercised")
	}
}
