package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// manyKeys writes a keys file of n keys, one per client (the shape of a deployment with
// thousands of clients), and returns its path and the last key.
func manyKeys(tb testing.TB, n int) (file, last string) {
	tb.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	for i := 0; i < n; i++ {
		last = NewKey()
		fmt.Fprintf(&b, "  - name: client-%d\n    role: ingest\n    hash: %s\n    client_ids: [client-%d]\n", i, Hash(last), i)
	}
	file = filepath.Join(tb.TempDir(), "keys.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return file, last
}

// BenchmarkAuthenticate: the cost of authenticating one request against 10,000 configured keys.
func BenchmarkAuthenticate(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			file, key := manyKeys(b, n)
			a, err := New(Options{KeysFile: file})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := a.Authenticate(key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadKeysFile: start-up cost of a keys file of 10,000 keys.
func BenchmarkLoadKeysFile(b *testing.B) {
	file, _ := manyKeys(b, 10000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := New(Options{KeysFile: file}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestManyKeys: with thousands of keys each key still authenticates as its own name and client,
// an unknown key is refused, and one key configured under two names is refused at load.
func TestManyKeys(t *testing.T) {
	file, last := manyKeys(t, 5000)
	a, err := New(Options{KeysFile: file})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Authenticate(last)
	if err != nil || p.Name != "client-4999" || !p.CanActFor("client-4999") || p.CanActFor("client-4998") {
		t.Fatalf("last key: %+v %v", p, err)
	}
	if _, err := a.Authenticate(NewKey()); err == nil {
		t.Fatal("an unknown key was accepted")
	}
	h := Hash(NewKey())
	if _, err := New(Options{Keys: "a:ingest:" + h + ";b:admin:" + h}); err == nil || !strings.Contains(err.Error(), `same hash as key "a"`) {
		t.Fatalf("one hash under two names: %v", err)
	}
}
