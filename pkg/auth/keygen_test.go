package auth

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeygenOutputLoads runs scripts/keygen.sh as the README tells operators to, and loads both
// forms it prints: the keys file entry and the inline entry accept the printed key, with its
// role and clientIds.
func TestKeygenOutputLoads(t *testing.T) {
	out, err := exec.Command("bash", "../../scripts/keygen.sh", "mobile-app", "ingest", "shop-3", "shop-4").CombinedOutput()
	if err != nil {
		t.Fatalf("keygen.sh: %v: %s", err, out)
	}
	var key, inline string
	var entry []string
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "key (give to the client, shown once): "):
			key = strings.TrimPrefix(l, "key (give to the client, shown once): ")
		case strings.HasPrefix(l, "  - name: "):
			for _, e := range lines[i:] {
				if strings.TrimSpace(e) == "" {
					break
				}
				entry = append(entry, e)
			}
		case strings.HasPrefix(l, "mobile-app:ingest:sha256:"):
			inline = l
		}
	}
	if !strings.HasPrefix(key, "spw_") || len(entry) == 0 || inline == "" {
		t.Fatalf("unexpected output:\n%s", out)
	}
	if strings.Contains(strings.Join(entry, "\n")+inline, key) {
		t.Fatal("the configuration lines contain the key itself")
	}
	file := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(file, []byte("keys:\n"+strings.Join(entry, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{"keys file": {KeysFile: file}, "inline": {Keys: inline}} {
		t.Run(name, func(t *testing.T) {
			a, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Authenticate(key)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != "mobile-app" || p.Role != RoleIngest || !p.CanActFor("shop-3") || !p.CanActFor("shop-4") || p.CanActFor("shop-5") {
				t.Fatalf("principal %+v", p)
			}
		})
	}
}
