// Package auth authenticates API requests by key and authorizes them by role and clientId.
//
// Keys are random secrets the operator hands to clients; configuration holds only their
// SHA-256 hashes, so a leaked configuration file does not leak keys. A request presents its key
// as "Authorization: Bearer <key>" or "X-API-Key: <key>". The presented key is hashed and its
// hash looked up among the configured ones, so authentication costs the same with ten keys or
// ten thousand.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/spillway/spillway/pkg/event"
)

// Role is what a key may do.
type Role string

// The roles: ingest posts events, read queries and streams them, admin does both.
const (
	RoleIngest Role = "ingest"
	RoleRead   Role = "read"
	RoleAdmin  Role = "admin"
)

// Key is one configured API key.
type Key struct {
	// Name identifies the key in logs and metrics (never the key itself).
	Name string `yaml:"name"`
	// Hash is "sha256:<64 hex digits>" of the key.
	Hash string `yaml:"hash"`
	Role Role   `yaml:"role"`
	// ClientIDs, when not empty, are the only clientIds the key may act for.
	ClientIDs []string `yaml:"client_ids"`

	sum     [sha256.Size]byte
	clients map[string]bool
}

// Principal is the authenticated caller of a request.
type Principal struct {
	Name    string
	Role    Role
	clients map[string]bool // nil: any clientId
}

// Anonymous is the principal of a server running without keys.
var Anonymous = &Principal{Name: "anonymous", Role: RoleAdmin}

// Can reports whether the principal's role allows r.
func (p *Principal) Can(r Role) bool { return p.Role == RoleAdmin || p.Role == r }

// CanActFor reports whether the principal may post or read events of clientID.
func (p *Principal) CanActFor(clientID string) bool { return p.clients == nil || p.clients[clientID] }

// Restricted reports whether the principal is bound to a list of clientIds.
func (p *Principal) Restricted() bool { return p.clients != nil }

type ctxKey struct{}

// FromContext returns the request's principal; Anonymous when none was set.
func FromContext(ctx context.Context) *Principal {
	if p, ok := ctx.Value(ctxKey{}).(*Principal); ok {
		return p
	}
	return Anonymous
}

// WithPrincipal returns ctx carrying p (for tests and the middleware).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// Authenticator checks presented keys against the configured hashes. It is immutable after
// New and safe for concurrent use.
type Authenticator struct {
	keys   []Key
	byHash map[[sha256.Size]byte]*Key
}

// Options are the auth settings of a service.
type Options struct {
	KeysFile string // YAML: keys: [{name, hash, role, client_ids}]
	Keys     string // inline: "name:role:sha256:<hex>[:client,client]" entries separated by ';'
	// InsecureNoAuth allows running without keys on a non-loopback address.
	InsecureNoAuth bool
	// Addr is the service's listen address: without keys, only loopback is allowed by default.
	Addr string
}

// ErrNoKeysOnPublicAddr is returned by New when no keys are configured for a non-loopback address.
var ErrNoKeysOnPublicAddr = errors.New("no API keys configured and the listen address is not loopback: configure auth.keys_file or auth.keys, or set auth.insecure_no_auth=true deliberately")

// New loads the keys. With no keys it returns (nil, nil) — open mode — only when the address
// is loopback or InsecureNoAuth is set; callers should warn about open mode.
func New(o Options) (*Authenticator, error) {
	var keys []Key
	if o.KeysFile != "" {
		b, err := os.ReadFile(o.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("auth.keys_file: %w", err)
		}
		var f struct {
			Keys []Key `yaml:"keys"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("auth.keys_file %s: %w", o.KeysFile, err)
		}
		keys = append(keys, f.Keys...)
	}
	if strings.TrimSpace(o.Keys) != "" {
		for i, entry := range strings.Split(o.Keys, ";") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			k, err := parseInline(entry)
			if err != nil {
				return nil, fmt.Errorf("auth.keys entry %d: %w", i+1, err)
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		if !o.InsecureNoAuth && !IsLoopback(o.Addr) {
			return nil, ErrNoKeysOnPublicAddr
		}
		return nil, nil
	}
	names := map[string]bool{}
	byHash := make(map[[sha256.Size]byte]*Key, len(keys))
	for i := range keys {
		k := &keys[i]
		if err := k.prepare(); err != nil {
			return nil, fmt.Errorf("auth key %q: %w", k.Name, err)
		}
		if names[k.Name] {
			return nil, fmt.Errorf("auth key %q: duplicate name", k.Name)
		}
		names[k.Name] = true
		// One key under two names (and two roles or client lists) would make the principal
		// depend on which entry wins: refuse it.
		if other, dup := byHash[k.sum]; dup {
			return nil, fmt.Errorf("auth key %q: same hash as key %q", k.Name, other.Name)
		}
		byHash[k.sum] = k
	}
	return &Authenticator{keys: keys, byHash: byHash}, nil
}

// Len is the number of configured keys.
func (a *Authenticator) Len() int { return len(a.keys) }

// Names lists the configured keys' names (not secret: they identify keys in logs and errors).
func (a *Authenticator) Names() []string {
	out := make([]string, len(a.keys))
	for i, k := range a.keys {
		out[i] = k.Name
	}
	return out
}

// parseInline reads "name:role:sha256:<hex>[:client,client]".
func parseInline(s string) (Key, error) {
	parts := strings.SplitN(s, ":", 5)
	if len(parts) < 4 || parts[2] != "sha256" {
		return Key{}, errors.New(`want "name:role:sha256:<hex>[:client,client,...]"`)
	}
	k := Key{Name: parts[0], Role: Role(parts[1]), Hash: "sha256:" + parts[3]}
	if len(parts) == 5 && parts[4] != "" {
		k.ClientIDs = strings.Split(parts[4], ",")
	}
	return k, nil
}

func (k *Key) prepare() error {
	if k.Name == "" {
		return errors.New("name is required")
	}
	switch k.Role {
	case RoleIngest, RoleRead, RoleAdmin:
	default:
		return fmt.Errorf("role must be ingest, read or admin, got %q", k.Role)
	}
	hexSum, ok := strings.CutPrefix(k.Hash, "sha256:")
	if !ok {
		return errors.New(`hash must look like "sha256:<64 hex digits>"`)
	}
	b, err := hex.DecodeString(hexSum)
	if err != nil || len(b) != sha256.Size {
		return errors.New(`hash must look like "sha256:<64 hex digits>"`)
	}
	copy(k.sum[:], b)
	if len(k.ClientIDs) > 0 {
		k.clients = map[string]bool{}
		for _, c := range k.ClientIDs {
			if c == "" {
				return errors.New("client_ids must not contain empty strings")
			}
			k.clients[c] = true
		}
	}
	return nil
}

// Authenticate returns the principal for a presented key, or an *event.Error of kind
// event.ErrUnauthenticated. Errors of this package are what the client reads: they name a key by
// its configured name, never the key.
//
// The presented key's SHA-256 is looked up in a map of the configured hashes. The lookup's
// timing can depend only on that hash, which the caller computed from its own guess: it tells
// nothing about a configured key (finding a key from its hash means inverting SHA-256 over 256
// random bits). The match is then confirmed with a constant-time comparison.
func (a *Authenticator) Authenticate(presented string) (*Principal, error) {
	if presented == "" {
		return nil, &event.Error{Kind: event.ErrUnauthenticated, Message: "missing API key (send Authorization: Bearer <key> or X-API-Key: <key>)"}
	}
	sum := sha256.Sum256([]byte(presented))
	found := a.byHash[sum]
	if found == nil || subtle.ConstantTimeCompare(sum[:], found.sum[:]) != 1 {
		return nil, &event.Error{Kind: event.ErrUnauthenticated, Message: "invalid API key"}
	}
	return &Principal{Name: found.Name, Role: found.Role, clients: found.clients}, nil
}

// PresentedKey extracts the key from "Authorization: Bearer <key>" or "X-API-Key".
func PresentedKey(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(rest)
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// Hash returns the configuration form of a key: "sha256:<hex>".
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewKey generates a random key: "spw_" and 32 random bytes in base64url.
func NewKey() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "spw_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// IsLoopback reports whether a listen address binds only loopback ("127.0.0.1:8080",
// "[::1]:8080", "localhost:8080"). ":8080" binds every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
