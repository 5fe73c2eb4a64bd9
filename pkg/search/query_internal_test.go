package search

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
)

// A store's error after search.query_timeout passed is answered 503 in words that name the
// setting, however the store wrapped the deadline; after the client went away it is 499; other
// errors pass unchanged.
func TestQueryErrorNamesTheTimeout(t *testing.T) {
	req := httptest.NewRequest("GET", "/api/v1/events/count?clientId=c", nil)
	timedOut, cancel := (&Service{cfg: config.Search{QueryTimeout: time.Nanosecond}}).queryContext(req)
	defer cancel()
	<-timedOut.Done()
	parent, leave := context.WithCancel(context.Background())
	left, cancel2 := (&Service{cfg: config.Search{QueryTimeout: time.Hour}}).queryContext(req.WithContext(parent))
	defer cancel2()
	leave()

	const timeout = "query took longer than search.query_timeout; retry or narrow it"
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		err    error
		status int
		code   string
		msg    string
	}{
		{"a store's deadline", timedOut, fmt.Errorf("count: %w: %w", event.ErrUnavailable, timedOut.Err()), 503, "unavailable", timeout},
		{"the context's cause, as net/http returns it", timedOut, fmt.Errorf("count: %w: %w", event.ErrUnavailable, context.Cause(timedOut)), 503, "unavailable", timeout},
		{"a typed unavailability over the deadline (the tier's)", timedOut,
			&event.Error{Kind: event.ErrUnavailable, Message: "events of this time range cannot be read right now; retry later", Err: timedOut.Err()}, 503, "unavailable", timeout},
		{"not a deadline", timedOut, fmt.Errorf("count: %w: clientIds are required", event.ErrInvalid), 400, "invalid_request", "count: invalid: clientIds are required"},
		{"the client went away", left, fmt.Errorf("count: %w: %w", event.ErrUnavailable, left.Err()), httpx.StatusClientClosedRequest, "canceled", "the client closed the request before its answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := queryError(tc.ctx, tc.err)
			if !errors.Is(err, tc.err) {
				t.Errorf("the store's error is lost: %v", err)
			}
			if a := httpx.ToError(err); a.Status != tc.status || a.Code != tc.code || a.Message != tc.msg {
				t.Errorf("%d %s %q, want %d %s %q", a.Status, a.Code, a.Message, tc.status, tc.code, tc.msg)
			}
		})
	}
}
