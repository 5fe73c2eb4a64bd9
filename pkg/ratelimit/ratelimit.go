// Package ratelimit keeps one token bucket per principal (an API key, or a clientId when the
// service runs without keys), so that one noisy client is throttled while the others keep
// their latency. Buckets idle for a while are forgotten, which bounds memory.
package ratelimit

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a set of token buckets keyed by principal. It is safe for concurrent use.
// A Limiter with a non-positive rate allows everything.
type Limiter struct {
	rate    rate.Limit
	burst   int
	maxKeys int
	idle    time.Duration
	now     func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// New returns a limiter allowing perSecond units per key with bursts of burst units, tracking at
// most maxKeys keys (least recently used keys beyond it are dropped, i.e. start full again).
func New(perSecond float64, burst, maxKeys int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	if maxKeys < 1 {
		maxKeys = 100000
	}
	return &Limiter{rate: rate.Limit(perSecond), burst: burst, maxKeys: maxKeys, idle: 10 * time.Minute,
		now: time.Now, buckets: map[string]*bucket{}}
}

// Allow takes n units from key's bucket. When the bucket cannot cover them it takes nothing
// and returns how long the caller should wait before retrying. A request larger than the
// burst is charged as a full burst, so it can pass once the bucket is full.
func (l *Limiter) Allow(key string, n int) (ok bool, retryAfter time.Duration) {
	return l.AllowAll(map[string]int{key: n})
}

// AllowAll takes units from several buckets at once, all or nothing: a request whose events
// belong to several clientIds is charged to each, and refused as a whole — charging none —
// when any bucket cannot cover its share. retryAfter is the longest wait among the refusals.
func (l *Limiter) AllowAll(units map[string]int) (ok bool, retryAfter time.Duration) {
	if l == nil || l.rate <= 0 || len(units) == 0 {
		return true, 0
	}
	now := l.now()
	taken := make([]*rate.Reservation, 0, len(units))
	var wait time.Duration
	for key, n := range units {
		n = min(max(n, 0), l.burst)
		r := l.bucket(key, now).ReserveN(now, n)
		if !r.OK() {
			wait = max(wait, time.Second)
			continue
		}
		taken = append(taken, r)
		if d := r.DelayFrom(now); d > 0 {
			wait = max(wait, d)
		}
	}
	if wait == 0 {
		return true, 0
	}
	// Give back what was reserved: a refused request costs its principals nothing.
	for _, r := range taken {
		r.CancelAt(now)
	}
	return false, time.Duration(math.Ceil(wait.Seconds())) * time.Second
}

// Blocked reports, without taking anything, whether key's bucket is empty (less than one
// unit): callers refuse such a request before reading its body, so a flooding client costs
// little more than its connection.
func (l *Limiter) Blocked(key string) (blocked bool, retryAfter time.Duration) {
	if l == nil || l.rate <= 0 {
		return false, 0
	}
	now := l.now()
	tokens := l.bucket(key, now).TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	wait := time.Duration((1 - tokens) / float64(l.rate) * float64(time.Second))
	return true, max(time.Second, time.Duration(math.Ceil(wait.Seconds()))*time.Second)
}

// bucket returns key's bucket, creating a full one when the key is new.
func (l *Limiter) bucket(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		l.sweep(now)
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	return b.lim
}

// sweep forgets idle buckets and, when still over maxKeys, the least recently used ones.
// Called with l.mu held.
func (l *Limiter) sweep(now time.Time) {
	if len(l.buckets) < l.maxKeys && now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for k, b := range l.buckets {
		if now.Sub(b.used) > l.idle {
			delete(l.buckets, k)
		}
	}
	for len(l.buckets) >= l.maxKeys {
		var oldestKey string
		var oldest time.Time
		for k, b := range l.buckets {
			if oldestKey == "" || b.used.Before(oldest) {
				oldestKey, oldest = k, b.used
			}
		}
		delete(l.buckets, oldestKey)
	}
}

// Len is the number of tracked keys.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
