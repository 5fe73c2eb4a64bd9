package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/event"
)

func post(ctx context.Context, args []string, e env) int {
	f := newFlags(e, "post [flags] [FILE...]",
		"Store the events of each FILE: NDJSON (one event per line) or a JSON array of events; \"-\" or\n"+
			"no FILE reads stdin. Events are sent in batches and retried safely: an event without an id or\n"+
			"a timestamp gets them before the first attempt. Prints how many were accepted, how many were\n"+
			"already stored (duplicates), and each refused line with its number and the reason.")
	gz := f.Bool("gzip", false, "compress request bodies")
	searchable := f.Bool("searchable", false, "answer once the events are visible to search (wait=searchable)")
	async := f.Bool("async", false, "answer once ingest holds the events, before they are durable (ack=async)")
	batchEvents := f.Int("batch-events", 1000, "events per request, at most")
	batchBytes := f.Int("batch-bytes", 1<<20, "bytes per request, at most")
	progress := f.String("progress", "auto", "progress bar on stderr: auto (a file of 1 MiB or more, on a terminal), always, never")
	if ok, code := f.parse(args); !ok {
		return code
	}
	ack := client.AckDurable
	switch {
	case *searchable && *async:
		return f.usageError("--searchable and --async exclude each other")
	case *searchable:
		ack = client.AckSearchable
	case *async:
		ack = client.AckAsync
	}
	if *progress != "auto" && *progress != "always" && *progress != "never" {
		return f.usageError("--progress must be auto, always or never, got %q", *progress)
	}
	files := f.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	c, err := f.client(client.Options{Gzip: *gz, Ack: ack})
	if err != nil {
		return f.usageError("%v", err)
	}
	ix, err := c.NewIndexer(client.IndexerConfig{FlushEvents: *batchEvents, FlushBytes: *batchBytes,
		MaxBufferedBytes: max(8<<20, 4**batchBytes)})
	if err != nil {
		return f.usageError("%v", err)
	}
	s := &summary{}
	code := exitOK
	for i, name := range files {
		if code = s.postFile(ctx, e, ix, i, name, *progress); code != exitOK {
			break // the summary still reports what was read before
		}
	}
	// Every event read gets its outcome; an interrupt (ctx) fails those still being retried.
	if err := ix.Close(ctx); err != nil {
		fmt.Fprintln(e.stderr, "spillway: stopped before every event was stored:", err)
	}
	return max(code, s.print(e.stdout, ix.Stats())) // the codes grow with severity
}

// summary collects the outcome of every line posted.
type summary struct {
	mu       sync.Mutex
	read     int
	accepted int
	refused  []lineError // the server or the parser refused the event: exit 1
	failed   []lineError // the request failed (retries exhausted, 5xx, 401): exit 3
}

type lineError struct {
	file    int    // the input's position on the command line
	name    string // the input's name
	line    int
	err     error
	refused bool // the event's own fault
}

func (s *summary) add(le lineError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if le.refused {
		s.refused = append(s.refused, le)
	} else {
		s.failed = append(s.failed, le)
	}
}

// refused reports whether a post failed because of the event itself: a field error that names
// it, or the event alone over the size limit. Anything else is the service's or the network's.
func refused(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && (len(e.Details) > 0 && e.Status < 500 || e.Status == http.StatusRequestEntityTooLarge)
}

// maxListed bounds the refused lines a summary lists, for an input where every line is wrong.
const maxListed = 1000

// print writes the summary and returns the exit code. Refused lines are listed one by one;
// failures, which are the service's or the network's and come in whole batches, once per
// error with the lines they cover.
func (s *summary) print(w io.Writer, st client.IndexerStats) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(w, "%d events read: %d accepted (%d already stored), %d refused", s.read, s.accepted, st.Duplicates, len(s.refused))
	if len(s.failed) > 0 {
		fmt.Fprintf(w, ", %d failed", len(s.failed))
	}
	fmt.Fprintln(w)
	byPosition := func(a, b lineError) int { return cmp.Or(a.file-b.file, a.line-b.line) }
	slices.SortFunc(s.refused, byPosition)
	for i, le := range s.refused {
		if i == maxListed {
			fmt.Fprintf(w, "… and %d more refused lines\n", len(s.refused)-maxListed)
			break
		}
		fmt.Fprintf(w, "%s:%d: %s\n", le.name, le.line, message(le.err))
	}
	slices.SortFunc(s.failed, byPosition)
	var order []string
	groups := map[string][]lineError{}
	for _, le := range s.failed {
		m := message(le.err)
		if groups[m] == nil {
			order = append(order, m)
		}
		groups[m] = append(groups[m], le)
	}
	for _, m := range order {
		g := groups[m]
		first, last := g[0], g[len(g)-1]
		fmt.Fprintf(w, "%d failed, %s:%d to %s:%d: %s\n", len(g), first.name, first.line, last.name, last.line, m)
	}
	switch {
	case len(s.failed) > 0:
		return exitFailure
	case len(s.refused) > 0:
		return exitRejected
	}
	return exitOK
}

func message(err error) string { return strings.TrimPrefix(err.Error(), "client: ") }

// failing reports whether a request has failed for good: the service is down or refuses the
// credentials, and reading on would only fail more events.
func (s *summary) failing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.failed) > 0
}

var errStopped = errors.New("a request failed (see below); the rest of the input was not read")

// postFile reads one input and adds its events. It returns exitUsage when the input cannot be
// read, exitFailure when Add fails (ctx ended), exitOK otherwise: refused lines are counted in
// the summary, not here.
func (s *summary) postFile(ctx context.Context, e env, ix client.Indexer, index int, name, progress string) int {
	var r io.Reader = e.stdin
	size := int64(-1)
	label := name
	if name == "-" {
		label = "stdin"
	} else {
		file, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(e.stderr, "spillway:", err)
			return exitUsage
		}
		defer file.Close()
		if fi, err := file.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		r = file
	}
	if showProgress(e.stderr, progress, size) {
		bar := progressbar.NewOptions64(size, progressbar.OptionSetWriter(e.stderr), progressbar.OptionSetDescription(label),
			progressbar.OptionShowBytes(true), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		defer bar.Finish()
		r = io.TeeReader(r, bar)
	}

	add := func(line int, raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.failing() {
			return errStopped
		}
		s.mu.Lock()
		s.read++
		s.mu.Unlock()
		ev, err := parse(raw)
		if err != nil {
			s.add(lineError{index, label, line, err, true})
			return nil
		}
		return ix.Add(ctx, ev, client.Callbacks{
			OnSuccess: func(client.Event) { s.mu.Lock(); s.accepted++; s.mu.Unlock() },
			OnFailure: func(_ client.Event, err error) { s.add(lineError{index, label, line, err, refused(err)}) },
		})
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var err error
	if firstByte(br) == '[' {
		err = readArray(br, add)
	} else {
		err = readLines(br, add)
	}
	var ie inputError
	switch {
	case errors.As(err, &ie):
		fmt.Fprintf(e.stderr, "spillway: %s:%v\n", label, err)
		return exitUsage
	case err != nil:
		return failed(e, err)
	}
	return exitOK
}

func showProgress(stderr io.Writer, mode string, size int64) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	f, ok := stderr.(*os.File)
	return ok && size >= 1<<20 && term.IsTerminal(int(f.Fd()))
}

// parseLimits let the parser apply the API's rules of form (fields, types, JSON) and leave
// the limits the server configures (sizes, time skew) to the server, which names the line too.
var parseLimits = event.Limits{MaxEvents: 1, MaxPayloadBytes: 1 << 30, MaxPayloadDepth: 20, MaxPayloadKeys: 1 << 30,
	MaxFutureSkew: 100 * 365 * 24 * time.Hour, MaxPastAge: 100 * 365 * 24 * time.Hour}

// parse reads one event with the API's own decoder, so a line is refused here exactly as the
// server would refuse it, and gets its id (a UUIDv7) and timestamp (now) when it has none.
// raw is nil for a line too long to hold.
func parse(raw []byte) (client.Event, error) {
	if raw == nil {
		return client.Event{}, fmt.Errorf("line longer than %d bytes", maxLine)
	}
	events, err := event.Decode(raw, event.FormatJSON, time.Now(), parseLimits)
	if err != nil {
		var ve *event.ValidationError
		if errors.As(err, &ve) && len(ve.Details) > 0 {
			msgs := make([]string, len(ve.Details))
			for i, d := range ve.Details {
				msgs[i] = strings.TrimPrefix(d.Field+": "+d.Message, ": ")
			}
			return client.Event{}, errors.New(strings.Join(msgs, "; "))
		}
		return client.Event{}, err
	}
	return events[0], nil
}

// inputError is an input that cannot be read on: a broken file, or a JSON array whose syntax
// breaks (its later elements cannot be found).
type inputError struct {
	line int
	err  error
}

func (e inputError) Error() string { return fmt.Sprintf("%d: %v", e.line, e.err) }

// maxLine bounds one NDJSON line held in memory; ingest refuses a body over 10 MiB anyway.
const maxLine = 16 << 20

// readLines hands each non-blank line to add with its line number (nil for a line over
// maxLine).
func readLines(r *bufio.Reader, add func(line int, raw []byte) error) error {
	for n := 1; ; n++ {
		var line []byte
		tooLong := false
		var err error
		for {
			var chunk []byte
			chunk, err = r.ReadSlice('\n')
			if len(line)+len(chunk) <= maxLine {
				line = append(line, chunk...)
			} else {
				tooLong = true
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return inputError{n, err}
		}
		var aerr error
		switch {
		case tooLong:
			aerr = add(n, nil)
		case len(bytes.TrimSpace(line)) > 0:
			aerr = add(n, line)
		}
		if aerr != nil || err != nil { // err is io.EOF here
			return aerr
		}
	}
}

// readArray hands each element of a JSON array to add with the line it starts on.
func readArray(r io.Reader, add func(line int, raw []byte) error) error {
	lc := &lineCounter{r: r}
	dec := json.NewDecoder(lc)
	// next is the 1-based line of the next value: the newlines read so far, less those the
	// decoder holds from that value's first byte on.
	next := func() int {
		b, _ := io.ReadAll(dec.Buffered())
		b = bytes.TrimLeft(bytes.TrimPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte{','}), " \t\r\n")
		return lc.lines - bytes.Count(b, []byte{'\n'}) + 1
	}
	if _, err := dec.Token(); err != nil { // '['
		return inputError{next(), err}
	}
	for dec.More() {
		line := next()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return inputError{line, fmt.Errorf("%w; the rest of the input was not read", err)}
		}
		if err := add(line, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return inputError{next(), err}
	}
	return nil
}

type lineCounter struct {
	r     io.Reader
	lines int
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.lines += bytes.Count(p[:n], []byte{'\n'})
	return n, err
}

// firstByte peeks at the first byte that is not white space in the reader's buffer.
func firstByte(r *bufio.Reader) byte {
	buf, _ := r.Peek(r.Size())
	if b := bytes.TrimLeft(buf, " \t\r\n"); len(b) > 0 {
		return b[0]
	}
	return 0
}
