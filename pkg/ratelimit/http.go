package ratelimit

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Exceeded is the refusal of a principal over its rate (event.ErrRateLimited: 429
// rate_limited, distinct from ingest's "overloaded", which is about the server, not the caller);
// limit names the setting, retryAfter when its bucket can cover a request again.
func Exceeded(principal, limit string, retryAfter time.Duration) error {
	return &event.Error{Kind: event.ErrRateLimited, RetryAfter: retryAfter,
		Message: fmt.Sprintf("rate limit exceeded for %s (%s); retry after the delay", principal, limit)}
}

// Middleware charges one unit per request to the bucket key(r) names, answering 429 with
// Retry-After through writeErr when it is empty. It must run after authentication, so that key
// can use the request's principal.
func Middleware(l *Limiter, limit string, key func(*http.Request) (bucket, label string), writeErr func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bucket, label := key(r)
			if ok, after := l.Allow(bucket, 1); !ok {
				writeErr(w, r, Exceeded(label, limit, after))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// ClientAddr is the host of the request's remote address: the principal of an unauthenticated
// caller. X-Forwarded-For is not trusted — any client can write it; behind a proxy, use keys.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
