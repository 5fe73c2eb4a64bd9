package auth

import (
	"fmt"
	"net/http"

	"github.com/spillway/spillway/pkg/event"
)

// ErrorWriter writes an error response; services pass httpx.WriteError bound to their logger,
// so auth errors share the JSON envelope without auth importing the HTTP plumbing.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, err error)

// Require authenticates every request and checks its role. With a nil Authenticator (open
// mode) every request runs as Anonymous. Handlers check clientIds with CanActFor.
func Require(a *Authenticator, role Role, writeErr ErrorWriter) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := Anonymous
			if a != nil {
				var err error
				p, err = a.Authenticate(PresentedKey(r))
				if err != nil {
					w.Header().Set("WWW-Authenticate", `Bearer realm="spillway"`)
					writeErr(w, r, err)
					return
				}
				if !p.Can(role) {
					writeErr(w, r, &event.Error{Kind: event.ErrForbidden, Message: fmt.Sprintf("API key %q has role %s; this endpoint needs %s or admin", p.Name, p.Role, role)})
					return
				}
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// CheckClients returns event.ErrForbidden naming the first clientId the principal may not act for.
func CheckClients(p *Principal, clientIDs ...string) error {
	for _, c := range clientIDs {
		if !p.CanActFor(c) {
			return &event.Error{Kind: event.ErrForbidden, Message: fmt.Sprintf("API key %q may not act for clientId %q", p.Name, c)}
		}
	}
	return nil
}
