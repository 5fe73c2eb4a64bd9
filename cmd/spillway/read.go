package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/event"
)

func get(ctx context.Context, args []string, e env) int {
	f := newFlags(e, "get [flags] ID", "Print the event with this id as one line of JSON.")
	if ok, code := f.parse(args); !ok {
		return code
	}
	if f.NArg() != 1 {
		return f.usageError("get takes one event id")
	}
	c, err := f.client(client.Options{})
	if err != nil {
		return f.usageError("%v", err)
	}
	ev, err := c.Get(ctx, f.Arg(0))
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Fprintf(e.stderr, "spillway: no event with id %q\n", f.Arg(0))
		return exitRejected
	case err != nil:
		return failed(e, err)
	}
	return printed(e, writeEvent(e.stdout, ev))
}

// query registers the filter flags of list, count and tail.
type query struct {
	clients, types []string
	from, to       string
}

func (q *query) flags(f *flags, times bool) {
	f.StringArrayVar(&q.clients, "client", nil, "clientId of the events (required; repeat for several)")
	f.StringArrayVar(&q.types, "type", nil, "only events of this type (repeat for several)")
	if times {
		f.StringVar(&q.from, "from", "", `events at or after this time: RFC 3339, "now", or a duration before now ("-1h")`)
		f.StringVar(&q.to, "to", "", "events before this time (as --from)")
	}
}

func (q *query) build(now time.Time) (client.Query, error) {
	if len(q.clients) == 0 {
		return client.Query{}, errors.New("--client is required")
	}
	out := client.Query{ClientIDs: q.clients, Types: q.types}
	var err error
	if out.From, err = parseTime(q.from, now); err != nil {
		return client.Query{}, fmt.Errorf("--from: %w", err)
	}
	if out.To, err = parseTime(q.to, now); err != nil {
		return client.Query{}, fmt.Errorf("--to: %w", err)
	}
	return out, nil
}

// start parses args and builds the query and the client; when c is nil the command ends with
// code.
func (q *query) start(f *flags, args []string) (cq client.Query, c *client.Client, code int) {
	if ok, code := f.parse(args); !ok {
		return cq, nil, code
	}
	cq, err := q.build(time.Now())
	if err != nil {
		return cq, nil, f.usageError("%v", err)
	}
	if c, err = f.client(client.Options{}); err != nil {
		return cq, nil, f.usageError("%v", err)
	}
	return cq, c, exitOK
}

// parseTime reads an RFC 3339 time, "now", or a negative duration ("-1h": an hour ago).
func parseTime(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func list(ctx context.Context, args []string, e env) int {
	f := newFlags(e, "list [flags]", "Print every event that matches, oldest first, following the pages to the last.")
	var q query
	q.flags(f, true)
	desc := f.Bool("desc", false, "newest first")
	pageSize := f.Int("page-size", 1000, "events per request (at most search.max_limit, 1,000 by default)")
	output := f.String("output", "ndjson", "ndjson (one event per line) or table")
	cq, c, code := q.start(f, args)
	if c == nil {
		return code
	}
	if *output != "ndjson" && *output != "table" {
		return f.usageError("--output must be ndjson or table, got %q", *output)
	}
	cq.Desc, cq.Limit = *desc, *pageSize
	w := bufio.NewWriter(e.stdout)
	write := func(ev client.Event) error { return writeEvent(w, ev) }
	var tw *tabwriter.Writer
	if *output == "table" {
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "TIMESTAMP\tID\tCLIENT\tTYPE\tPAYLOAD")
		write = func(ev client.Event) error {
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ev.Timestamp.UTC().Format(event.TimeFormat), ev.ID, ev.ClientID, ev.Type, shorten(string(ev.Payload), 60))
			return err
		}
	}
	for ev, err := range c.Events(ctx, cq) {
		if err != nil {
			w.Flush()
			return failed(e, err)
		}
		if err := write(ev); err != nil {
			return printed(e, err)
		}
	}
	if tw != nil {
		tw.Flush()
	}
	return printed(e, w.Flush())
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func count(ctx context.Context, args []string, e env) int {
	f := newFlags(e, "count [flags]", "Print the exact number of events that match.")
	var q query
	q.flags(f, true)
	cq, c, code := q.start(f, args)
	if c == nil {
		return code
	}
	n, err := c.Count(ctx, cq)
	if err != nil {
		return failed(e, err)
	}
	_, err = fmt.Fprintln(e.stdout, n)
	return printed(e, err)
}

func tail(ctx context.Context, args []string, e env) int {
	f := newFlags(e, "tail [flags]",
		"Print each new event that matches as one line of JSON, as it arrives, until interrupted. After a\n"+
			"disconnect it reconnects and continues where it was, without a gap or a repeat. On exit it prints\n"+
			"the token to continue from with --last-event-id.")
	var q query
	q.flags(f, false)
	last := f.String("last-event-id", "", "continue after this token (printed by an earlier tail) instead of starting now")
	cq, c, code := q.start(f, args)
	if c == nil {
		return code
	}
	token := *last
	for ev, err := range c.Stream(ctx, cq, token) {
		if err != nil {
			if ctx.Err() == nil { // an interrupt is how tail ends
				code = failed(e, err)
			}
			break
		}
		if err := writeEvent(e.stdout, ev.Event); err != nil {
			code = printed(e, err)
			break
		}
		token = ev.LastEventID
	}
	if token != "" {
		fmt.Fprintln(e.stderr, "spillway: continue with --last-event-id", token)
	}
	return code
}

// eventJSON is an event as the API writes it: times in UTC with six fractional digits.
type eventJSON struct {
	ID         string          `json:"id"`
	ClientID   string          `json:"clientId"`
	Type       string          `json:"type,omitempty"`
	Timestamp  string          `json:"timestamp"`
	IngestedAt string          `json:"ingestedAt"`
	Payload    json.RawMessage `json:"payload,omitempty"`
}

func writeEvent(w io.Writer, ev client.Event) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(eventJSON{ID: ev.ID, ClientID: ev.ClientID, Type: ev.Type, Payload: ev.Payload,
		Timestamp: ev.Timestamp.UTC().Format(event.TimeFormat), IngestedAt: ev.IngestedAt.UTC().Format(event.TimeFormat)})
}

// printed reports a failure to write the output (a closed pipe, a full disk).
func printed(e env, err error) int {
	if err != nil {
		fmt.Fprintln(e.stderr, "spillway: write output:", err)
		return exitFailure
	}
	return exitOK
}
