package ingest

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"

	"github.com/spillway/spillway/pkg/event"
)

// unsupported is event.ErrUnsupportedMedia with a message that is only the rule.
func unsupported(msg string, args ...any) error {
	return &event.Error{Kind: event.ErrUnsupportedMedia, Message: fmt.Sprintf(msg, args...)}
}

// format reads Content-Type: application/json or application/x-ndjson, UTF-8 only.
func format(h http.Header) (event.Format, error) {
	const want = "Content-Type must be application/json or application/x-ndjson"
	ct := h.Get("Content-Type")
	if ct == "" {
		return 0, unsupported("%s (none given)", want)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, unsupported("%s, got %q", want, ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, unsupported("charset must be utf-8, got %q", cs)
	}
	switch mt {
	case "application/json":
		return event.FormatJSON, nil
	case "application/x-ndjson":
		return event.FormatNDJSON, nil
	}
	return 0, unsupported("%s, got %q", want, mt)
}

// gzipped reads Content-Encoding: identity or gzip.
func gzipped(h http.Header) (bool, error) {
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc {
	case "", "identity":
		return false, nil
	case "gzip", "x-gzip":
		return true, nil
	default:
		return false, unsupported("Content-Encoding must be gzip or absent, got %q", enc)
	}
}

// Read sizes: the first buffer, and the step in which body bytes are charged to the budget.
const minRead = 32 << 10

// readBody reads the body, gunzipped when gz, into memory that is charged to the budget before
// it is allocated. It returns the body and the bytes charged (release them when done, also on
// error). Bodies over max bytes (after gunzip) are refused with ErrTooLarge without reading
// further: a gzip bomb costs at most max bytes of memory.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, gz bool) (body []byte, held int64, err error) {
	max := int64(h.cfg.MaxBodyBytes)
	tooLarge := &event.Error{Kind: event.ErrTooLarge,
		Message: fmt.Sprintf("request body over %d bytes (ingest.max_body_bytes, counted after gunzip)", max)}
	if !gz && r.ContentLength > max {
		return nil, 0, tooLarge
	}
	// Compressed bytes stream through; only the gunzipped body is held. The wire limit just
	// stops endless uploads; gzip of incompressible data is barely larger than the data.
	wire := max + 1
	if gz {
		wire = 2*max + 64<<10
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, wire)
	if gz {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, 0, readError(err, true)
		}
		defer zr.Close()
		src = zr
	}
	src = io.LimitReader(src, max+1)

	size := int64(minRead)
	if !gz && r.ContentLength >= 0 {
		size = r.ContentLength + 1 // +1: room to see EOF without growing
	}
	size = min(size, max+1)
	if !h.budget.acquire(size, 0) {
		return nil, 0, h.overloaded()
	}
	held = size
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			grow := min(int64(cap(buf)), max+1-int64(cap(buf)))
			if grow <= 0 {
				return nil, held, tooLarge
			}
			if !h.budget.acquire(grow, 0) {
				return nil, held, h.overloaded()
			}
			held += grow
			next := make([]byte, len(buf), int64(cap(buf))+grow)
			copy(next, buf)
			buf = next
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, held, tooLarge
			}
			return nil, held, readError(err, gz)
		}
	}
	if int64(len(buf)) > max {
		return nil, held, tooLarge
	}
	return buf, held, nil
}

// readError describes a body that could not be read: a timeout (slow client), a broken gzip
// stream, or a connection that went away.
func readError(err error, gz bool) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &event.Error{Kind: event.ErrRequestTimeout, Message: "the request body did not arrive within http.read_timeout", Err: err}
	}
	msg := "could not read the request body: "
	if gz {
		msg = "could not read the gzip request body: "
	}
	return &event.Error{Kind: event.ErrInvalid, Message: msg + err.Error(), Err: err}
}
