// Command report renders the results the fault suite recorded (JSON lines, see
// faults.Record) into RELIABILITY.md. scripts/faults.sh runs it after the suite.
//
//	go run ./faults/report -in results.jsonl -out RELIABILITY.md -command "scripts/faults.sh" \
//	    -date "..." -machine "..." -version "Go ..." -version "Elasticsearch ..."
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/spillway/spillway/faults"
)

type list []string

func (l *list) String() string     { return fmt.Sprint(*l) }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var m faults.Meta
	var versions list
	in := flag.String("in", "", "results file (JSON lines)")
	out := flag.String("out", "RELIABILITY.md", "report to write")
	flag.StringVar(&m.Command, "command", "scripts/faults.sh", "the command that produced the results")
	flag.StringVar(&m.Date, "date", "", "when it ran")
	flag.StringVar(&m.Machine, "machine", "", "where it ran")
	flag.StringVar(&m.Outcome, "outcome", "", "the test command's summary")
	flag.Var(&versions, "version", "a version line (repeatable)")
	flag.Parse()
	m.Versions = versions
	if err := run(*in, *out, m); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in, out string, m faults.Meta) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	results, err := faults.ReadResults(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	var b bytes.Buffer
	if err := faults.Render(&b, m, results); err != nil {
		return err
	}
	return os.WriteFile(out, b.Bytes(), 0o644)
}
