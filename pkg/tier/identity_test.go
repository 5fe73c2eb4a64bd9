package tier_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/event"
)

// An event's identity is its id and the UTC day of its timestamp, in both stores. One id on two
// consecutive days — at 23:59:59.999999 and at 00:00:00 — is two events: both archived, verify
// clean, both listed by the API from whichever tier holds them, and GET /events/{id} answering
// the newest, or the day asked for with ?day=, the same from either tier.
func TestOneIDOnTwoDaysIsTwoEventsInBothTiers(t *testing.T) {
	now := time.Now().UTC()
	today := now.Truncate(day)
	olderThan := 30 * day
	coldDay := today.Add(-olderThan - 5*day) // dropped from Elasticsearch by retention
	hotDay := today.Add(-2 * day)            // kept in Elasticsearch
	lastOf := func(d time.Time) time.Time { return d.Add(day - time.Microsecond) }
	at := func(id string, ts time.Time) event.Event {
		return event.Event{ID: id, ClientID: "identity", Type: "t", Timestamp: ts, IngestedAt: now,
			Payload: json.RawMessage(fmt.Sprintf(`{"at":%q}`, ts.Format(time.RFC3339Nano)))}
	}
	events := []event.Event{
		at("dup-cold", lastOf(coldDay)), at("dup-cold", coldDay.Add(day)), // both cold
		at("dup-hot", lastOf(hotDay)), at("dup-hot", hotDay.Add(day)), // both hot
		at("dup-both", lastOf(coldDay)), at("dup-both", hotDay.Add(day)), // one in each tier
	}
	// The last day before the horizon has an index too, so retention moves the boundary to the
	// horizon itself.
	filler := at("filler", today.Add(-olderThan-day+time.Hour))
	filler.ClientID = "other"
	events = append(events, filler)
	pgCfg := testenv.PG(t)
	h := setupHistory(t, pgCfg, events, now, olderThan)
	srv := startServer(t, h, pgCfg, time.Minute)
	ctx := testenv.Context(t, 2*time.Minute)

	// PostgreSQL archived all six; the cold days' indices are gone from Elasticsearch.
	var rows int64
	if err := archivetest.DB(t, h.pg).QueryRow(ctx, "SELECT count(*) FROM events_all WHERE client_id = 'identity'").Scan(&rows); err != nil || rows != 6 {
		t.Fatalf("archived %d rows, want 6 (%v)", rows, err)
	}
	if _, err := h.es.Get(ctx, "dup-cold", time.Time{}); err == nil {
		t.Fatal("dup-cold is still in Elasticsearch: the test would not read the cold tier")
	}
	// Verify is clean over the days Elasticsearch still holds (retention verified the others
	// before dropping them).
	rep, err := h.archiver().Verify(ctx, archive.VerifyRequest{From: hotDay, To: today.Add(day)})
	if err != nil || !rep.OK() || rep.Pending != 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}

	// The list API returns all six, in (timestamp, id) order across the tiers.
	var page struct {
		Events []apiEvent `json:"events"`
	}
	if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {"identity"}, "limit": {"100"}}, &page); code != 200 {
		t.Fatalf("list: %d", code)
	}
	want := []string{"dup-both@" + lastOf(coldDay).Format(event.TimeFormat), "dup-cold@" + lastOf(coldDay).Format(event.TimeFormat),
		"dup-cold@" + coldDay.Add(day).Format(event.TimeFormat), "dup-hot@" + lastOf(hotDay).Format(event.TimeFormat),
		"dup-both@" + hotDay.Add(day).Format(event.TimeFormat), "dup-hot@" + hotDay.Add(day).Format(event.TimeFormat)}
	if len(page.Events) != len(want) {
		t.Fatalf("listed %d events, want %d: %+v", len(page.Events), len(want), page.Events)
	}
	for i, e := range page.Events {
		if got := e.ID + "@" + e.Timestamp; got != want[i] {
			t.Fatalf("event %d: %s, want %s", i, got, want[i])
		}
	}

	// GET by id: the newest, or the day asked for; the same answer from either tier.
	for _, c := range []struct {
		id, day string
		want    time.Time
	}{
		{"dup-cold", "", coldDay.Add(day)}, // cold tier
		{"dup-cold", coldDay.Format(time.DateOnly), lastOf(coldDay)},
		{"dup-hot", "", hotDay.Add(day)}, // hot tier
		{"dup-hot", hotDay.Format(time.DateOnly), lastOf(hotDay)},
		{"dup-both", "", hotDay.Add(day)},                            // hot, newer than the cold one
		{"dup-both", coldDay.Format(time.DateOnly), lastOf(coldDay)}, // cold
	} {
		var got apiEvent
		q := url.Values{}
		if c.day != "" {
			q.Set("day", c.day)
		}
		if code := srv.get(t, "/api/v1/events/"+c.id, q, &got); code != 200 || got.Timestamp != c.want.Format(event.TimeFormat) {
			t.Fatalf("GET %s?day=%s: %d %s, want %s", c.id, c.day, code, got.Timestamp, c.want.Format(event.TimeFormat))
		}
	}
	if code := srv.get(t, "/api/v1/events/dup-hot", url.Values{"day": {coldDay.Format(time.DateOnly)}}, nil); code != 404 {
		t.Fatalf("GET dup-hot on a day it does not exist: %d, want 404", code)
	}
	for _, d := range []string{"0001-01-01", "1969-12-31", "2262-04-11", "9999-12-31"} { // no event can be there
		if code := srv.get(t, "/api/v1/events/dup-hot", url.Values{"day": {d}}, nil); code != 404 {
			t.Fatalf("GET on day %s, outside the storable range: %d, want 404", d, code)
		}
	}
	if code := srv.get(t, "/api/v1/events/dup-hot", url.Values{"day": {"yesterday"}}, nil); code != 400 {
		t.Fatalf("GET with a malformed day: %d, want 400", code)
	}
	// Both stores pick the same event for the same question where both hold the days (payloads
	// compared as JSON values: jsonb does not keep the original spacing).
	for _, d := range []time.Time{{}, hotDay} {
		fromES, err1 := h.es.Get(ctx, "dup-hot", d)
		fromPG, err2 := h.pg.Get(ctx, "dup-hot", d)
		var pES, pPG any
		_ = json.Unmarshal(fromES.Payload, &pES)
		_ = json.Unmarshal(fromPG.Payload, &pPG)
		if err1 != nil || err2 != nil || !fromES.Timestamp.Equal(fromPG.Timestamp) || fmt.Sprint(pES) != fmt.Sprint(pPG) || pES == nil {
			t.Fatalf("day %v: Elasticsearch %+v %v, PostgreSQL %+v %v", d, fromES, err1, fromPG, err2)
		}
	}
}
