// Command spillway is the command-line client of Spillway, built on pkg/client: it posts
// NDJSON or JSON files in batches, with retries that never store an event twice, and reads
// events back, page by page or live.
//
//	spillway post events.ndjson            # or a JSON array, or stdin
//	spillway get ID
//	spillway list --client c1 --from -1h   # every page, as NDJSON (or --output table)
//	spillway count --client c1
//	spillway tail --client c1              # the live stream, resumed after disconnects
//
// The services are found through --ingest-url/--search-url or SPILLWAY_INGEST_URL and
// SPILLWAY_SEARCH_URL (default http://127.0.0.1:8080 and :8081); an API key through --api-key or
// SPILLWAY_API_KEY. Exit codes: 0 success; 1 some events were refused (post) or the event does
// not exist (get); 2 bad usage or unreadable input; 3 the services failed or could not be
// reached (after retries), or refused the credentials.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/version"
)

// Exit codes, for scripts.
const (
	exitOK       = 0 // everything was done
	exitRejected = 1 // the server refused some events (post), or there is no such event (get)
	exitUsage    = 2 // bad flags or arguments, or an input file that cannot be read
	exitFailure  = 3 // the services failed or could not be reached, or refused the credentials
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// env is what a run sees of the process, so that tests can run it in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

const usage = `spillway is the command-line client of Spillway.

Usage:
  spillway post [flags] [FILE...]   store the events of NDJSON or JSON-array files ("-" or none: stdin)
  spillway get [flags] ID           print one event
  spillway list [flags]             print every matching event, all pages
  spillway count [flags]            print how many events match
  spillway tail [flags]             print new events live, resuming after disconnects
  spillway --version

Every command takes --ingest-url, --search-url and --api-key, which default to the environment:
  SPILLWAY_INGEST_URL   ingest's base URL (default http://127.0.0.1:8080)
  SPILLWAY_SEARCH_URL   search's base URL (default http://127.0.0.1:8081)
  SPILLWAY_API_KEY      the API key, sent as "Authorization: Bearer <key>"
Run "spillway COMMAND --help" for a command's flags.

Exit codes: 0 success; 1 some events were refused (post) or no such event (get);
2 bad usage or unreadable input; 3 the services failed or could not be reached.
`

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	cmds := map[string]func(context.Context, []string, env) int{
		"post": post, "get": get, "list": list, "count": count, "tail": tail,
	}
	switch name := args[0]; {
	case name == "--version" || name == "version":
		fmt.Fprintln(e.stdout, "spillway", version.String())
		return exitOK
	case name == "-h" || name == "--help" || name == "help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	case cmds[name] != nil:
		return cmds[name](ctx, args[1:], e)
	default:
		fmt.Fprintf(e.stderr, "spillway: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
}

// flags is a command's flag set with the connection flags every command takes.
type flags struct {
	*pflag.FlagSet
	e                   env
	ingest, search, key string
	retryFor, timeout   time.Duration
}

func newFlags(e env, use, what string) *flags {
	f := &flags{FlagSet: pflag.NewFlagSet("spillway "+use, pflag.ContinueOnError), e: e}
	f.SetOutput(e.stderr)
	f.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: spillway %s\n\n%s\n\nFlags:\n%s", use, what, f.FlagUsages())
	}
	f.StringVar(&f.ingest, "ingest-url", "", "ingest's base URL (default $SPILLWAY_INGEST_URL, else "+client.DefaultIngestURL+")")
	f.StringVar(&f.search, "search-url", "", "search's base URL (default $SPILLWAY_SEARCH_URL, else "+client.DefaultSearchURL+")")
	f.StringVar(&f.key, "api-key", "", "API key (default $SPILLWAY_API_KEY)")
	f.DurationVar(&f.retryFor, "retry-for", 5*time.Minute, "keep retrying a request (429, 503, no answer) for up to this long; 0: never retry")
	f.DurationVar(&f.timeout, "timeout", 30*time.Second, "time limit of one attempt of a request")
	return f
}

// parse parses args; when it returns false the command ends with code.
func (f *flags) parse(args []string) (ok bool, code int) {
	err := f.Parse(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return false, exitOK
	case err != nil:
		fmt.Fprintln(f.e.stderr, "spillway:", err)
		f.Usage()
		return false, exitUsage
	}
	return true, 0
}

// client builds the client from the flags and the environment.
func (f *flags) client(opts client.Options) (*client.Client, error) {
	pick := func(flag, envName string) string {
		if flag != "" {
			return flag
		}
		return f.e.getenv(envName)
	}
	opts.IngestURL = pick(f.ingest, "SPILLWAY_INGEST_URL")
	opts.SearchURL = pick(f.search, "SPILLWAY_SEARCH_URL")
	opts.APIKey = pick(f.key, "SPILLWAY_API_KEY")
	opts.Timeout = f.timeout
	opts.Retry.MaxElapsed = f.retryFor
	if f.retryFor <= 0 {
		opts.Retry.MaxElapsed = -1
	}
	return client.New(opts)
}

// usageError reports a bad argument.
func (f *flags) usageError(format string, args ...any) int {
	fmt.Fprintf(f.e.stderr, "spillway: "+format+"\n", args...)
	f.Usage()
	return exitUsage
}

// failed reports an error that is not the user's input: the services or the connection.
func failed(e env, err error) int {
	fmt.Fprintln(e.stderr, "spillway:", strings.TrimPrefix(err.Error(), "client: "))
	return exitFailure
}
