package event

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// scanner is a strict, allocation-light JSON reader over one request body. encoding/json cannot
// do what ingest needs: it keeps the last of duplicate keys, accepts invalid UTF-8 and lone
// surrogate escapes (replacing them with U+FFFD), and says nothing about number sizes. Every one
// of those would reach Elasticsearch or, worse, PostgreSQL's jsonb, which rejects \u0000 and lone
// surrogates and would fail the archive long after the client was told 201.
//
// Syntax errors are fatal (*syntaxError): the reader cannot resynchronise inside a JSON array.
// Rule violations inside well-formed JSON (a lone surrogate, a huge number) are reported as
// problems and scanning goes on, so that one response lists every bad event.
type scanner struct {
	buf    []byte
	pos    int
	spaces int // insignificant whitespace bytes skipped so far
}

// syntaxError is malformed JSON at a byte offset of the body (or NDJSON line).
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.offset, e.msg)
}

// hardDepth bounds recursion whatever the configured payload depth: a body of ten million '['
// must not grow the stack without limit. Deeper input ends decoding with an error.
const hardDepth = 64

func (s *scanner) fail(format string, args ...any) error {
	return &syntaxError{offset: s.pos, msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
			s.spaces++
		default:
			return
		}
	}
}

// atEnd reports whether only whitespace is left. Use it, not peek() == 0, to test for the end:
// a NUL byte in the body also peeks as 0, and data after it must not be silently ignored.
func (s *scanner) atEnd() bool {
	s.skipSpace()
	return s.pos >= len(s.buf)
}

// peek returns the next byte after whitespace, or 0 at the end (or at a NUL byte).
func (s *scanner) peek() byte {
	s.skipSpace()
	if s.pos >= len(s.buf) {
		return 0
	}
	return s.buf[s.pos]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.unexpected(fmt.Sprintf("%q", c))
	}
	s.pos++
	return nil
}

// more consumes what follows a member of an object or an element of an array: true after ',',
// false after closing (the end of the container), an error otherwise.
func (s *scanner) more(closing byte) (bool, error) {
	switch s.peek() {
	case ',':
		s.pos++
		return true, nil
	case closing:
		s.pos++
		return false, nil
	}
	return false, s.unexpected(fmt.Sprintf("',' or %q", closing))
}

func (s *scanner) unexpected(want string) error {
	if s.pos >= len(s.buf) {
		return s.fail("unexpected end of input, expected %s", want)
	}
	c := s.buf[s.pos]
	if c >= 0x20 && c < 0x7f {
		return s.fail("unexpected %q, expected %s", c, want)
	}
	return s.fail("unexpected byte 0x%02x, expected %s", c, want)
}

// str reads a string at the current position (after whitespace). With decode it returns the
// unescaped value; otherwise value is "". problem names the first content rule broken: invalid
// UTF-8, \u0000, or an unpaired UTF-16 surrogate escape.
func (s *scanner) str(decode bool) (value, problem string, err error) {
	if s.peek() != '"' {
		return "", "", s.unexpected("a string")
	}
	s.pos++
	start := s.pos
	var b *strings.Builder // only allocated when the string has escapes
	flush := func(upTo int) {
		if decode && b != nil {
			b.Write(s.buf[start:upTo])
		}
	}
	for {
		if s.pos >= len(s.buf) {
			return "", "", s.fail("unterminated string")
		}
		c := s.buf[s.pos]
		switch {
		case c == '"':
			end := s.pos
			s.pos++
			if !decode {
				return "", problem, nil
			}
			if b == nil {
				return string(s.buf[start:end]), problem, nil
			}
			flush(end)
			return b.String(), problem, nil
		case c == '\\':
			if decode && b == nil {
				b = &strings.Builder{}
			}
			flush(s.pos)
			r, p, err := s.escape()
			if err != nil {
				return "", "", err
			}
			if p != "" && problem == "" {
				problem = p
			}
			if decode {
				b.WriteRune(r)
			}
			start = s.pos
		case c < 0x20:
			return "", "", s.fail("control character 0x%02x in string (must be escaped)", c)
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, size := utf8.DecodeRune(s.buf[s.pos:])
			if r == utf8.RuneError && size == 1 && problem == "" {
				problem = "invalid UTF-8"
			}
			s.pos += size
		}
	}
}

// escape reads one escape sequence starting at the backslash and returns the rune it stands for.
func (s *scanner) escape() (r rune, problem string, err error) {
	s.pos++ // the backslash
	if s.pos >= len(s.buf) {
		return 0, "", s.fail("unterminated escape")
	}
	c := s.buf[s.pos]
	s.pos++
	switch c {
	case '"', '\\', '/':
		return rune(c), "", nil
	case 'b':
		return '\b', "", nil
	case 'f':
		return '\f', "", nil
	case 'n':
		return '\n', "", nil
	case 'r':
		return '\r', "", nil
	case 't':
		return '\t', "", nil
	case 'u':
	default:
		s.pos--
		return 0, "", s.fail("invalid escape \\%c", c)
	}
	u, err := s.hex4()
	if err != nil {
		return 0, "", err
	}
	switch {
	case u == 0:
		return 0, `contains \u0000, which PostgreSQL cannot store`, nil
	case u >= 0xDC00 && u <= 0xDFFF:
		return utf8.RuneError, "unpaired UTF-16 surrogate escape", nil
	case u >= 0xD800 && u <= 0xDBFF:
		// A high surrogate must be followed by an escaped low surrogate.
		if s.pos+1 < len(s.buf) && s.buf[s.pos] == '\\' && s.buf[s.pos+1] == 'u' {
			save := s.pos
			s.pos += 2
			lo, err := s.hex4()
			if err != nil {
				return 0, "", err
			}
			if lo >= 0xDC00 && lo <= 0xDFFF {
				return 0x10000 + (u-0xD800)<<10 + (lo - 0xDC00), "", nil
			}
			s.pos = save // the next escape is read on its own
		}
		return utf8.RuneError, "unpaired UTF-16 surrogate escape", nil
	}
	return u, "", nil
}

func (s *scanner) hex4() (rune, error) {
	if s.pos+4 > len(s.buf) {
		return 0, s.fail("short \\u escape")
	}
	var r rune
	for _, c := range s.buf[s.pos : s.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, s.fail("invalid hex digit %q in \\u escape", c)
		}
	}
	s.pos += 4
	return r, nil
}

// maxNumberLen bounds number literals: long enough for any float64 written in full, short
// enough that no parser downstream (Jackson caps at 1000) has to think about it.
const maxNumberLen = 100

// number reads a number literal per RFC 8259 and returns it.
func (s *scanner) number() (lit string, err error) {
	s.skipSpace()
	start := s.pos
	if s.pos < len(s.buf) && s.buf[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(s.buf) && s.buf[s.pos] >= '0' && s.buf[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	switch {
	case s.pos < len(s.buf) && s.buf[s.pos] == '0':
		s.pos++
	case digits() == 0:
		return "", s.unexpected("a digit")
	}
	if s.pos < len(s.buf) && s.buf[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return "", s.unexpected("a digit after the decimal point")
		}
	}
	if s.pos < len(s.buf) && (s.buf[s.pos] == 'e' || s.buf[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.buf) && (s.buf[s.pos] == '+' || s.buf[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return "", s.unexpected("a digit in the exponent")
		}
	}
	return string(s.buf[start:s.pos]), nil
}

// numberProblem applies the archive's number rules to a literal.
func numberProblem(lit string) string {
	if len(lit) > maxNumberLen {
		return fmt.Sprintf("number literal is %d characters, more than %d", len(lit), maxNumberLen)
	}
	if f, err := strconv.ParseFloat(lit, 64); err != nil && math.IsInf(f, 0) {
		return "number " + lit + " is outside the finite float64 range"
	}
	return ""
}

func (s *scanner) literal(word string) error {
	s.skipSpace()
	if len(s.buf)-s.pos < len(word) || string(s.buf[s.pos:s.pos+len(word)]) != word {
		return s.unexpected("a JSON value")
	}
	s.pos += len(word)
	return nil
}

// skip reads any JSON value without applying content rules, as for an unknown field whose
// event is rejected anyway.
func (s *scanner) skip(depth int) error {
	switch c := s.peek(); {
	case c == '{' || c == '[':
		if depth >= hardDepth {
			return s.fail("JSON nested deeper than %d levels", hardDepth)
		}
		s.pos++
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		if s.peek() == closing {
			s.pos++
			return nil
		}
		for {
			if c == '{' {
				if _, _, err := s.str(false); err != nil {
					return err
				}
				if err := s.expect(':'); err != nil {
					return err
				}
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if more, err := s.more(closing); !more {
				return err
			}
		}
	case c == '"':
		_, _, err := s.str(false)
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		_, err := s.number()
		return err
	default:
		return s.unexpected("a JSON value")
	}
}
