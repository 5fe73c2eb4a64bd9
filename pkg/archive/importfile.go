package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FileSource reads NDJSON files (one event object per line, as ingest accepts them) for an
// import, in the order given. Records are numbered across the files, from 0; blank lines are
// records too (and invalid), so that positions are line numbers - 1 of a single file.
type FileSource struct {
	paths []string
	name  string
	// MaxLine bounds a line (default 16 MiB).
	MaxLine int
}

// NewFileSource names the source by each file's absolute path, size and modification time: the
// same files resume an interrupted import; changed files are a new import.
func NewFileSource(paths ...string) (*FileSource, error) {
	if len(paths) == 0 {
		return nil, errors.New("no files")
	}
	var parts []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(abs)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", p)
		}
		parts = append(parts, fmt.Sprintf("%s:%d:%d", abs, st.Size(), st.ModTime().UnixNano()))
	}
	return &FileSource{paths: paths, name: "file:" + strings.Join(parts, ","), MaxLine: 16 << 20}, nil
}

// Name identifies the files.
func (f *FileSource) Name() string { return f.name }

// Count counts the records (lines).
func (f *FileSource) Count(ctx context.Context) (int64, error) {
	var n int64
	err := f.Each(ctx, 0, func(int64, []byte, bool) error { n++; return nil })
	return n, err
}

// Each calls fn with every line from the skip-th on.
func (f *FileSource) Each(ctx context.Context, skip int64, fn func(pos int64, line []byte, hasID bool) error) error {
	var pos int64
	for _, p := range f.paths {
		file, err := os.Open(p)
		if err != nil {
			return err
		}
		r := bufio.NewReaderSize(file, 1<<20)
		for {
			line, err := readLine(r, f.MaxLine)
			if errors.Is(err, io.EOF) && line == nil {
				break
			}
			if err != nil && !errors.Is(err, io.EOF) {
				file.Close()
				return fmt.Errorf("%s line %d: %w", p, pos+1, err)
			}
			if pos >= skip {
				if err := ctx.Err(); err != nil {
					file.Close()
					return err
				}
				if ferr := fn(pos, line, hasTopLevelID(line)); ferr != nil {
					file.Close()
					return ferr
				}
			}
			pos++
			if errors.Is(err, io.EOF) {
				break
			}
		}
		file.Close()
	}
	return nil
}

// readLine reads one line without its newline (a final line without one included); a line over
// max bytes is an error.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("line longer than %d bytes", max)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if len(line) == 0 {
				return nil, err
			}
			return bytes.TrimRight(line, "\r"), err
		}
		return bytes.TrimRight(line[:len(line)-1], "\r"), nil
	}
}

// hasTopLevelID says whether a JSON object has an "id" key at its top level (false for anything
// that is not an object; validation then reports it).
func hasTopLevelID(line []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return false
		}
		if k == "id" {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}
