package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillway/spillway/pkg/event"
)

func TestAuthenticateAndAuthorize(t *testing.T) {
	ingestKey, readKey, adminKey := NewKey(), NewKey(), NewKey()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.yaml")
	yml := "keys:\n" +
		"  - name: mobile\n    role: ingest\n    hash: " + Hash(ingestKey) + "\n    client_ids: [c1, c2]\n" +
		"  - name: ops\n    role: admin\n    hash: " + Hash(adminKey) + "\n"
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	inline := "dash:read:" + Hash(readKey) + ":c3" // name:role:sha256:<hex>:clients
	a, err := New(Options{KeysFile: file, Keys: inline, Addr: ":8080"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     string
		wantErr error
		role    Role
		can     map[Role]bool
		clients map[string]bool
	}{
		{"ingest key", ingestKey, nil, RoleIngest, map[Role]bool{RoleIngest: true, RoleRead: false}, map[string]bool{"c1": true, "c2": true, "c3": false}},
		{"read key inline", readKey, nil, RoleRead, map[Role]bool{RoleIngest: false, RoleRead: true}, map[string]bool{"c3": true, "c1": false}},
		{"admin key", adminKey, nil, RoleAdmin, map[Role]bool{RoleIngest: true, RoleRead: true}, map[string]bool{"anything": true}},
		{"unknown key", NewKey(), event.ErrUnauthenticated, "", nil, nil},
		{"missing key", "", event.ErrUnauthenticated, "", nil, nil},
		{"hash instead of key", Hash(adminKey), event.ErrUnauthenticated, "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.key)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), tc.key) && tc.key != "" {
					t.Fatal("error message contains the key")
				}
				return
			}
			if err != nil || p.Role != tc.role {
				t.Fatalf("p=%+v err=%v", p, err)
			}
			for r, want := range tc.can {
				if p.Can(r) != want {
					t.Errorf("Can(%s) = %v", r, !want)
				}
			}
			for c, want := range tc.clients {
				if p.CanActFor(c) != want {
					t.Errorf("CanActFor(%s) = %v", c, !want)
				}
			}
		})
	}
}

func TestSecureByDefault(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		insecure bool
		wantErr  bool
	}{
		{":8080", false, true},
		{"0.0.0.0:8080", false, true},
		{"10.1.2.3:8080", false, true},
		{"127.0.0.1:8080", false, false},
		{"[::1]:8080", false, false},
		{"localhost:8080", false, false},
		{":8080", true, false},
	} {
		a, err := New(Options{Addr: tc.addr, InsecureNoAuth: tc.insecure})
		if (err != nil) != tc.wantErr || a != nil {
			t.Errorf("addr %q insecure=%v: a=%v err=%v", tc.addr, tc.insecure, a, err)
		}
	}
}

func TestBadKeyConfig(t *testing.T) {
	for _, inline := range []string{
		"x:writer:sha256:" + strings.Repeat("a", 64),
		"x:read:md5:" + strings.Repeat("a", 32),
		"x:read:sha256:zz",
		"x:read:sha256:" + strings.Repeat("a", 64) + ";x:read:sha256:" + strings.Repeat("b", 64),
		"onlyname",
	} {
		if _, err := New(Options{Keys: inline, Addr: ":1"}); err == nil {
			t.Errorf("accepted %q", inline)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "k.yaml")
	_ = os.WriteFile(file, []byte("keys:\n  - name: a\n    role: read\n    hash: sha256:"+strings.Repeat("a", 64)+"\n    clientids: [x]\n"), 0o600)
	if _, err := New(Options{KeysFile: file, Addr: ":1"}); err == nil {
		t.Error("accepted a keys file with a misspelt field")
	}
}

func TestMiddleware(t *testing.T) {
	key := NewKey()
	a, err := New(Options{Keys: "svc:read:" + Hash(key) + ":c1", Addr: ":1"})
	if err != nil {
		t.Fatal(err)
	}
	var got *Principal
	h := Require(a, RoleRead, func(w http.ResponseWriter, r *http.Request, err error) {
		switch {
		case errors.Is(err, event.ErrUnauthenticated):
			w.WriteHeader(401)
		case errors.Is(err, event.ErrForbidden):
			w.WriteHeader(403)
		default:
			w.WriteHeader(500)
		}
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = FromContext(r.Context()) }))
	for _, tc := range []struct {
		header, value string
		status        int
	}{
		{"Authorization", "Bearer " + key, 200},
		{"Authorization", "bearer " + key, 200},
		{"X-API-Key", key, 200},
		{"Authorization", "Basic " + key, 401},
		{"Authorization", "Bearer nope", 401},
		{"", "", 401},
	} {
		got = nil
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/api/v1/events", nil)
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s %q: status %d, want %d", tc.header, tc.value[:min(len(tc.value), 12)], rec.Code, tc.status)
		}
		if tc.status == 200 && (got == nil || got.Name != "svc" || got.CanActFor("c2")) {
			t.Errorf("principal %+v", got)
		}
		if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	}
	// Role check: an ingest endpoint refuses a read key.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/v1/events", nil)
	req.Header.Set("X-API-Key", key)
	Require(a, RoleIngest, func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, event.ErrForbidden) {
			w.WriteHeader(403)
		}
	})(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != 403 {
		t.Errorf("read key on ingest endpoint: %d", rec.Code)
	}
	if err := CheckClients(FromContext(WithPrincipal(req.Context(), &Principal{Name: "k", Role: RoleRead, clients: map[string]bool{"c1": true}})), "c1", "c2"); !errors.Is(err, event.ErrForbidden) || !strings.Contains(err.Error(), `"c2"`) {
		t.Errorf("CheckClients: %v", err)
	}
}
