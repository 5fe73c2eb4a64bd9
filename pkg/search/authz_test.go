package search_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/search"
)

// TestBoundReadKeySeesOnlyItsClients runs the read API behind auth.Require as cmd/search
// wires it: a read key bound to clientIds cannot list, count or stream other clients (403
// naming the clientId), and another client's event by id is a 404 like a missing one.
func TestBoundReadKeySeesOnlyItsClients(t *testing.T) {
	bound, admin, ingestKey := auth.NewKey(), auth.NewKey(), auth.NewKey()
	a, err := auth.New(auth.Options{Addr: "127.0.0.1:0",
		Keys: "dash:read:" + auth.Hash(bound) + ":c1,c2;ops:admin:" + auth.Hash(admin) + ";app:ingest:" + auth.Hash(ingestKey)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	store := &fakeStore{t: t,
		page:  func(event.PageQuery) ([]event.Event, error) { return nil, nil },
		count: func(event.Filter) (int64, error) { return 7, nil },
		getFn: func(id string) (event.Event, error) {
			switch id {
			case "mine":
				return event.Event{ID: id, ClientID: "c1", Timestamp: now, IngestedAt: now}, nil
			case "theirs":
				return event.Event{ID: id, ClientID: "c9", Timestamp: now, IngestedAt: now}, nil
			}
			return event.Event{}, event.ErrNotFound
		},
	}
	svc := search.New(store, newFakeFeed("events-a"), testConfig(), nil, prometheus.NewRegistry())
	r := httpx.NewRouter()
	httpx.Use(r, httpx.WithRequestID)
	api := r.NewRoute().Subrouter()
	api.Use(auth.Require(a, auth.RoleRead, func(w http.ResponseWriter, r *http.Request, err error) { httpx.WriteError(w, r, nil, err) }))
	svc.Mount(api)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	srv := httptest.NewServer(apitest.Handler(t, apitest.Search, r))
	t.Cleanup(func() { cancel(); <-done; srv.Close() })

	tests := []struct {
		name, key, path string
		status          int
		mention         string // must appear in the error message
	}{
		{"list own", bound, "/api/v1/events?clientId=c1&clientId=c2", 200, ""},
		{"list other", bound, "/api/v1/events?clientId=c1&clientId=c3", 403, `"c3"`},
		{"count own", bound, "/api/v1/events/count?clientId=c2", 200, ""},
		{"count other", bound, "/api/v1/events/count?clientId=c3", 403, `"c3"`},
		{"stream other", bound, "/api/v1/events/stream?clientId=c3", 403, `"c3"`},
		{"get own", bound, "/api/v1/events/mine", 200, ""},
		{"get other client's event", bound, "/api/v1/events/theirs", 404, "no event with this id"},
		{"get missing", bound, "/api/v1/events/missing", 404, "no event with this id"},
		{"admin gets any", admin, "/api/v1/events/theirs", 200, ""},
		{"admin lists any", admin, "/api/v1/events?clientId=c9", 200, ""},
		{"ingest key may not read", ingestKey, "/api/v1/events?clientId=c1", 403, "needs read"},
		{"no key", "", "/api/v1/events?clientId=c1", 401, "missing API key"},
		{"wrong key", auth.NewKey(), "/api/v1/events/count?clientId=c1", 401, "invalid API key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != tc.status {
				b, _ := io.ReadAll(res.Body)
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, b)
			}
			if tc.status == 200 {
				return
			}
			b, _ := io.ReadAll(res.Body)
			var env errorBody
			if err := json.Unmarshal(b, &env); err != nil || env.Error.Code == "" {
				t.Fatalf("not an error envelope: %s", b)
			}
			if !strings.Contains(env.Error.Message, tc.mention) {
				t.Fatalf("message %q does not mention %s", env.Error.Message, tc.mention)
			}
			if tc.key != "" && strings.Contains(string(b), tc.key) {
				t.Fatal("the response echoes the key")
			}
		})
	}
}
