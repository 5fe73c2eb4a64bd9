package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Query selects events: those of ClientIDs (at least one; exact match), optionally of Types,
// with From ≤ timestamp < To (zero: unbounded). Desc and Limit (the page size; 0: the server's
// default, 100) apply to pages only; Stream takes ClientIDs and Types alone.
type Query struct {
	ClientIDs []string
	Types     []string
	From, To  time.Time
	Desc      bool
	Limit     int
}

func (q Query) values(times bool) url.Values {
	v := url.Values{"clientId": q.ClientIDs}
	if len(q.Types) > 0 {
		v["type"] = q.Types
	}
	if times && !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	}
	if times && !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	}
	return v
}

// Page is one page of events.
type Page struct {
	Events []Event `json:"events"`
	// NextCursor continues after the last event of this page; empty on the last page.
	NextCursor string `json:"nextCursor"`
}

// Page returns the page of q's events that starts after cursor ("" for the first page).
func (c *Client) Page(ctx context.Context, q Query, cursor string) (Page, error) {
	v := q.values(true)
	if q.Desc {
		v.Set("order", "desc")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	var p Page
	err := c.get(ctx, "page", "/api/v1/events?"+v.Encode(), func(r *http.Response) error {
		p = Page{}
		return json.NewDecoder(r.Body).Decode(&p)
	})
	return p, err
}

// Events returns every event q selects, in (timestamp, id) order (newest first with Desc),
// following nextCursor from the first page to the last. Each matching event that exists for
// the whole iteration is returned exactly once, also while new events arrive. An error ends
// the iteration; breaking out of the loop stops it without further requests.
func (c *Client) Events(ctx context.Context, q Query) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		cursor := ""
		for {
			p, err := c.Page(ctx, q, cursor)
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, e := range p.Events {
				if !yield(e, nil) {
					return
				}
			}
			if p.NextCursor == "" {
				return
			}
			cursor = p.NextCursor
		}
	}
}

// Count returns the exact number of events q selects (Desc and Limit do not apply).
func (c *Client) Count(ctx context.Context, q Query) (int64, error) {
	var out struct {
		Count *int64 `json:"count"`
	}
	err := c.get(ctx, "count", "/api/v1/events/count?"+q.values(true).Encode(), func(r *http.Response) error {
		if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
			return err
		}
		if out.Count == nil {
			return fmt.Errorf("%w: no count", errMalformed)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return *out.Count, nil
}

// Get returns the event with this id. An id that is not stored (or belongs to a client the API
// key may not read) is an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context, id string) (Event, error) {
	if id == "" {
		return Event{}, errors.New("client: get: empty id")
	}
	var e Event
	err := c.get(ctx, "get", "/api/v1/events/"+url.PathEscape(id), func(r *http.Response) error {
		e = Event{}
		return json.NewDecoder(r.Body).Decode(&e)
	})
	return e, err
}

// get is a GET on the search service, with retries.
func (c *Client) get(ctx context.Context, op, path string, read func(*http.Response) error) error {
	_, err := c.do(ctx, op, 0, func(ctx context.Context) (*http.Request, error) {
		req, err := c.newRequest(ctx, http.MethodGet, c.search+path, nil)
		if err == nil {
			req.Header.Set("Accept", "application/json")
		}
		return req, err
	}, read)
	return err
}
