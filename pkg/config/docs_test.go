package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEDocumentsEveryKey keeps the configuration table (docs/configuration.md) true: every key appears
// with its environment variable and its default, and the table names no key that does not exist.
func TestConfigurationTableDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| `") {
			cells := strings.Split(line, "|")
			if len(cells) > 3 && strings.Contains(cells[2], "SPILLWAY_") {
				rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = line
			}
		}
	}
	for _, k := range Keys() {
		row, ok := rows[k]
		if !ok {
			t.Errorf("docs/configuration.md lacks %s", k)
			continue
		}
		if !strings.Contains(row, "`"+EnvName(k)+"`") {
			t.Errorf("docs/configuration.md row for %s lacks %s", k, EnvName(k))
		}
		if !strings.Contains(row, "`"+Default(RoleIngest, k)+"`") {
			t.Errorf("docs/configuration.md row for %s lacks its default %q", k, Default(RoleIngest, k))
		}
		delete(rows, k)
	}
	for k := range rows {
		t.Errorf("docs/configuration.md documents %s, which is not a configuration key", k)
	}
}
