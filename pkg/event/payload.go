package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// MaxKeyBytes bounds every key inside a payload. The index keeps the payload in one flattened
// field, which indexes each leaf as the term "dotted.key.path\0value"; Lucene refuses terms over
// 32,766 bytes and fails the document. With at most 20 levels of 256-byte keys and leaf values
// indexed only up to 4,096 characters (16 KiB of UTF-8), no term can reach that limit.
const MaxKeyBytes = 256

// payloadWalker reads one payload object and applies the payload rules. It keeps only the first
// problem: the event is rejected either way, and one precise reason is what a client needs.
type payloadWalker struct {
	s       *scanner
	lim     Limits
	keys    int
	problem string
	path    []string // keys and [indices] from the payload down to the current value
	seen    []string // keys of the objects being read, innermost last, for duplicate detection
}

func (w *payloadWalker) report(format string, args ...any) {
	if w.problem == "" {
		w.problem = fmt.Sprintf(format, args...)
	}
}

// where names the current position for a message: "payload.user.tags[2]".
func (w *payloadWalker) where() string {
	var b strings.Builder
	b.WriteString("payload")
	for _, p := range w.path {
		if strings.HasPrefix(p, "[") {
			b.WriteString(p)
		} else {
			b.WriteByte('.')
			b.WriteString(printable(p, 64))
		}
	}
	return b.String()
}

// value reads a value at depth (the payload object itself is depth 1).
func (w *payloadWalker) value(depth int) error {
	s := w.s
	switch c := s.peek(); {
	case c == '{':
		return w.object(depth + 1)
	case c == '[':
		return w.array(depth + 1)
	case c == '"':
		_, p, err := s.str(false)
		if p != "" {
			w.report("string at %s: %s", w.where(), p)
		}
		return err
	case c == '-' || c >= '0' && c <= '9':
		lit, err := s.number()
		if err == nil {
			if p := numberProblem(lit); p != "" {
				w.report("%s at %s", p, w.where())
			}
		}
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.unexpected("a JSON value")
	}
}

func (w *payloadWalker) enter(depth int) error {
	if depth > w.lim.MaxPayloadDepth {
		w.report("nested deeper than %d levels at %s", w.lim.MaxPayloadDepth, w.where())
	}
	if depth > hardDepth {
		return w.s.fail("JSON nested deeper than %d levels", hardDepth)
	}
	w.s.pos++ // '{' or '['
	return nil
}

func (w *payloadWalker) object(depth int) error {
	s := w.s
	if err := w.enter(depth); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	mark := len(w.seen)
	var index map[string]struct{} // for large objects; small ones are scanned linearly
	defer func() { w.seen = w.seen[:mark] }()
	for {
		key, p, err := s.str(true)
		if err != nil {
			return err
		}
		w.keys++
		if w.keys == w.lim.MaxPayloadKeys+1 {
			w.report("more than %d keys (counted at every level)", w.lim.MaxPayloadKeys)
		}
		if p != "" {
			w.report("key at %s: %s", w.where(), p)
		}
		if len(key) > MaxKeyBytes {
			w.report("key %q at %s is %d bytes, more than %d", printable(key, 32), w.where(), len(key), MaxKeyBytes)
		}
		if w.duplicate(key, mark, &index) {
			w.report("duplicate key %q in %s", printable(key, 64), w.where())
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		w.path = append(w.path, key)
		err = w.value(depth)
		w.path = w.path[:len(w.path)-1]
		if err != nil {
			return err
		}
		if more, err := s.more('}'); !more {
			return err
		}
	}
}

// duplicate records key among the keys of the current object (those after mark) and reports
// whether it was already there. Keys compare after unescaping: "a" and "\u0061" are the same key.
func (w *payloadWalker) duplicate(key string, mark int, index *map[string]struct{}) bool {
	const linear = 16
	if *index == nil {
		for _, k := range w.seen[mark:] {
			if k == key {
				return true
			}
		}
		w.seen = append(w.seen, key)
		if len(w.seen)-mark > linear {
			*index = make(map[string]struct{}, 2*linear)
			for _, k := range w.seen[mark:] {
				(*index)[k] = struct{}{}
			}
		}
		return false
	}
	if _, dup := (*index)[key]; dup {
		return true
	}
	(*index)[key] = struct{}{}
	return false
}

func (w *payloadWalker) array(depth int) error {
	s := w.s
	if err := w.enter(depth); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		w.path = append(w.path, "["+strconv.Itoa(i)+"]")
		err := w.value(depth)
		w.path = w.path[:len(w.path)-1]
		if err != nil {
			return err
		}
		if more, err := s.more(']'); !more {
			return err
		}
	}
}

// readPayload reads the payload object at the scanner's position and returns it compacted, or
// the first rule it breaks. The caller has checked that the value starts with '{'.
//
// The payload is stored as the client wrote it, minus insignificant whitespace: json.Compact
// keeps every number literal digit for digit (so integers beyond float64 precision survive) and
// every escape as written.
func readPayload(s *scanner, lim Limits) (payload json.RawMessage, problem string, err error) {
	s.skipSpace()
	start, spaces := s.pos, s.spaces
	w := payloadWalker{s: s, lim: lim}
	if err := w.object(1); err != nil {
		return nil, "", err
	}
	if w.problem != "" {
		return nil, w.problem, nil
	}
	raw := s.buf[start:s.pos]
	var buf bytes.Buffer
	if s.spaces == spaces {
		// Already compact (the usual case): a copy is the compacted form.
		buf.Write(raw)
	} else if err := json.Compact(&buf, raw); err != nil {
		// Unreachable: the walker accepts only valid JSON. Kept as a guard, not trusted silently.
		return nil, "not valid JSON: " + err.Error(), nil
	}
	if buf.Len() > lim.MaxPayloadBytes {
		return nil, fmt.Sprintf("is %d bytes serialized, more than %d", buf.Len(), lim.MaxPayloadBytes), nil
	}
	return json.RawMessage(buf.Bytes()), "", nil
}

// printable shortens s to at most n bytes of valid UTF-8 for use in a message.
func printable(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
