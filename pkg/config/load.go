package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// envAliases are conventional variables accepted for a key after its SPILLWAY_ name, in order.
var envAliases = map[string][]string{
	"elasticsearch.urls": {"SPILLWAY_ES_URL", "ELASTICSEARCH_URL", "BONSAI_URL", "FOUNDELASTICSEARCH_URL", "SEARCHBOX_URL"},
	"postgres.url":       {"SPILLWAY_PG_URL", "DATABASE_URL"},
}

// defaults returns every key with its default; a key absent here cannot be configured.
func defaults(role Role) map[string]any {
	addr := map[Role]string{RoleIngest: ":8080", RoleSearch: ":8081", RoleArchiver: ":8082"}[role]
	if addr == "" {
		addr = ":8080"
	}
	return map[string]any{
		"log.level":  "info",
		"log.format": "json",

		"http.addr":                addr,
		"http.admin_addr":          "",
		"http.read_header_timeout": 5 * time.Second,
		"http.read_timeout":        30 * time.Second,
		"http.write_timeout":       0 * time.Second, // the stream writes for hours; handlers bound their own work
		"http.idle_timeout":        120 * time.Second,
		"http.max_header_bytes":    "64KiB",
		"http.max_connections":     4096,
		"http.shutdown_grace":      25 * time.Second,
		"http.drain_delay":         0 * time.Second,

		"elasticsearch.urls":             []string{"http://127.0.0.1:9200"},
		"elasticsearch.username":         "",
		"elasticsearch.password":         "",
		"elasticsearch.api_key":          "",
		"elasticsearch.ca_cert":          "",
		"elasticsearch.index_prefix":     "events",
		"elasticsearch.refresh_interval": 500 * time.Millisecond, // S4 in BENCHMARKS.md: searchable within a second at 2,000/s
		"elasticsearch.shards":           8,
		"elasticsearch.replicas":         "0-1",
		"elasticsearch.request_timeout":  30 * time.Second,
		"elasticsearch.max_retries":      3,

		"postgres.url":               "postgres://spillway:spillway@127.0.0.1:5432/spillway?sslmode=disable",
		"postgres.max_conns":         4,
		"postgres.schema":            "public",
		"postgres.statement_timeout": 60 * time.Second,
		"postgres.connect_timeout":   10 * time.Second,

		"ingest.max_body_bytes":      "10MiB",
		"ingest.max_events":          10000,
		"ingest.max_payload_bytes":   "256KiB",
		"ingest.max_payload_depth":   20,
		"ingest.max_payload_keys":    1000,
		"ingest.max_future_skew":     24 * time.Hour,
		"ingest.max_past_age":        30 * 24 * time.Hour,
		"ingest.ack_timeout":         10 * time.Second,
		"ingest.inflight_max_bytes":  "24MiB", // S7 in BENCHMARKS.md: RSS ≤ 300 MB under 5× overload
		"ingest.inflight_max_events": 25000,   // binds after the bytes for events of 1 KB and more
		"ingest.bulk_workers":        8,       // an upper bound: the number in flight adapts to Elasticsearch's latency
		"ingest.bulk_flush_bytes":    "4MiB",
		"ingest.bulk_flush_interval": 0 * time.Second, // no linger: group commit gathers only while requests are in flight
		"ingest.retry_after":         time.Second,

		// Admission control: docs/ingest-write-path.md.
		"ingest.queue_delay_target":   100 * time.Millisecond,
		"ingest.queue_delay_interval": 500 * time.Millisecond,

		"search.default_limit":              100,
		"search.max_limit":                  1000,
		"search.max_client_ids":             100,
		"search.max_streams":                1000,
		"search.stream_poll":                100 * time.Millisecond, // S9 in BENCHMARKS.md: delivery p99 ≤ 250 ms
		"search.stream_heartbeat":           15 * time.Second,
		"search.query_timeout":              10 * time.Second,
		"search.cursor_key":                 "",
		"search.postgres_max_conns":         2,
		"search.postgres_statement_timeout": 5 * time.Second,
		"search.cold_tier":                  false,
		"search.cold_boundary_refresh":      5 * time.Second,

		"archiver.batch_size":      5000,
		"archiver.poll_interval":   time.Second,
		"archiver.backoff_max":     30 * time.Second,
		"archiver.verify_interval": 5 * time.Minute,
		"archiver.verify_window":   time.Hour,
		"archiver.verify_bucket":   time.Hour,
		"archiver.retention_after": 0 * time.Second,

		"auth.keys_file":        "",
		"auth.keys":             "",
		"auth.insecure_no_auth": false,

		"ratelimit.ingest_events_per_second":   20000.0,
		"ratelimit.ingest_burst":               40000,
		"ratelimit.search_requests_per_second": 200.0,
		"ratelimit.search_burst":               400,
	}
}

// Keys lists every configuration key, sorted; docs/configuration.md's table is checked against it.
func Keys() []string {
	d := defaults(RoleIngest)
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// EnvName is the SPILLWAY_ environment variable for a key.
func EnvName(key string) string {
	return "SPILLWAY_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
}

// Default returns a key's default for a role, formatted as a user would write it.
func Default(role Role, key string) string {
	v, ok := defaults(role)[key]
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case []string:
		return strings.Join(x, ",")
	default:
		return fmt.Sprint(x)
	}
}

// Load builds the configuration of a role from defaults, the YAML file named by --config (or
// SPILLWAY_CONFIG), the environment and the flags in args. fs may carry the caller's own flags
// (e.g. a subcommand's); Load adds one flag per key (--http.addr, --ingest.max_events, ...) and
// --config, parses args and returns the positional arguments left over.
//
// getenv is os.LookupEnv in production; tests pass a map. A value that does not parse or breaks
// a rule yields an error naming the key; callers exit with status 2.
func Load(role Role, fs *pflag.FlagSet, args []string, getenv func(string) (string, bool)) (*Config, []string, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if fs == nil {
		fs = pflag.NewFlagSet(string(role), pflag.ContinueOnError)
	}
	defs := defaults(role)
	keys := make([]string, 0, len(defs))
	for k := range defs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	configFile := fs.String("config", "", "YAML configuration file (also SPILLWAY_CONFIG)")
	for _, k := range keys {
		fs.String(k, "", fmt.Sprintf("(env %s, default %q)", EnvName(k), Default(role, k)))
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}

	v := viper.New()
	for k, d := range defs {
		v.SetDefault(k, d)
	}

	file := *configFile
	if file == "" {
		file, _ = getenv("SPILLWAY_CONFIG")
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, nil, &Error{Problems: []string{fmt.Sprintf("config: cannot read %s: %v", file, err)}}
		}
		if err := checkFileKeys(v.AllKeys(), defs); err != nil {
			return nil, nil, err
		}
	}

	// Environment: SPILLWAY_<KEY>, then the conventional aliases. Set explicitly rather than with
	// AutomaticEnv so tests can pass their own environment.
	for _, k := range keys {
		names := append([]string{EnvName(k)}, envAliases[k]...)
		for _, n := range names {
			if val, ok := getenv(n); ok && val != "" {
				v.Set(k, val)
				break
			}
		}
	}
	if _, ok := getenv(EnvName("http.addr")); !ok {
		if port, ok := getenv("PORT"); ok && port != "" {
			v.Set("http.addr", net.JoinHostPort("", port))
		}
	}

	fs.Visit(func(f *pflag.Flag) {
		if _, known := defs[f.Name]; known {
			v.Set(f.Name, f.Value.String())
		}
	})

	var cfg Config
	err := v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		byteSizeHook,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, nil, &Error{Problems: []string{decodeProblem(err)}}
	}
	for i, u := range cfg.Elasticsearch.URLs {
		cfg.Elasticsearch.URLs[i] = strings.TrimSpace(u)
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	return &cfg, fs.Args(), nil
}

func checkFileKeys(fileKeys []string, defs map[string]any) error {
	var unknown []string
	for _, k := range fileKeys {
		if _, ok := defs[k]; !ok {
			unknown = append(unknown, k+": unknown key")
		}
	}
	if len(unknown) > 0 {
		return &Error{Problems: unknown}
	}
	return nil
}

// decodeProblem turns mapstructure's message into "key: problem".
func decodeProblem(err error) string {
	msg := err.Error()
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return strings.ToLower(de.Name()) + ": " + de.Unwrap().Error()
	}
	// mapstructure reports "'Ingest.MaxEvents' cannot parse ..."; keep the text, it names the field.
	return msg
}

var byteSizeType = reflect.TypeOf(ByteSize(0))

func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType {
		return data, nil
	}
	switch x := data.(type) {
	case string:
		return ParseByteSize(x)
	case int:
		return ByteSize(x), nil
	case int64:
		return ByteSize(x), nil
	case float64:
		return ByteSize(int64(x)), nil
	}
	return data, nil
}
