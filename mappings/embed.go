// Package mappings holds the Elasticsearch index template and roles and the PostgreSQL schema as
// files, so that the binaries, the scripts, the tests and docker-compose share one copy of each.
package mappings

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

// EventsTemplate is the composable index template for the event indices. Its index pattern,
// alias, shard and refresh settings are defaults that esstore overrides from configuration.
//
//go:embed elasticsearch/events-template.json
var EventsTemplate []byte

// ElasticsearchRoles are the least-privilege roles of the three services (spillway_ingest,
// spillway_search, spillway_archiver) in the file-realm roles.yml format, for the default index
// prefix "events" (docs/elasticsearch.md).
//
//go:embed elasticsearch/roles.yml
var ElasticsearchRoles []byte

//go:embed postgres/*.sql
var postgresFS embed.FS

// Migration is one numbered PostgreSQL schema file.
type Migration struct {
	// Name is the file name, e.g. "001_events.sql"; migrations apply in name order.
	Name string
	SQL  string
}

// PostgresMigrations returns the schema files in the order they must be applied.
func PostgresMigrations() []Migration {
	entries, err := fs.ReadDir(postgresFS, "postgres")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		b, err := postgresFS.ReadFile("postgres/" + e.Name())
		if err != nil {
			panic(err)
		}
		out = append(out, Migration{Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
