package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestPerKeyBuckets(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(10, 20, 100)
	l.now = func() time.Time { return clock }

	// The noisy key spends its burst and is refused with a hint; the polite key is unaffected.
	if ok, _ := l.Allow("noisy", 20); !ok {
		t.Fatal("burst refused")
	}
	ok, after := l.Allow("noisy", 5)
	if ok || after < time.Second {
		t.Fatalf("over-burst allowed=%v retryAfter=%v", ok, after)
	}
	if ok, _ := l.Allow("polite", 1); !ok {
		t.Fatal("polite key throttled by the noisy one")
	}
	// Refused requests take nothing: after 0.5 s, 5 units are back.
	clock = clock.Add(500 * time.Millisecond)
	if ok, _ := l.Allow("noisy", 5); !ok {
		t.Fatal("tokens did not refill")
	}
	if ok, _ := l.Allow("noisy", 1); ok {
		t.Fatal("more than the refill allowed")
	}
	// A request larger than the burst passes once the bucket is full.
	clock = clock.Add(10 * time.Second)
	if ok, _ := l.Allow("noisy", 1000); !ok {
		t.Fatal("oversized request can never pass")
	}
}

func TestDisabledAndNil(t *testing.T) {
	var nilL *Limiter
	if ok, _ := nilL.Allow("k", 1e6); !ok {
		t.Fatal("nil limiter refused")
	}
	if ok, _ := New(0, 1, 1).Allow("k", 1e6); !ok {
		t.Fatal("disabled limiter refused")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(1, 1, 50)
	l.now = func() time.Time { clock = clock.Add(time.Millisecond); return clock }
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprintf("k%d", i), 1)
	}
	if n := l.Len(); n > 50 {
		t.Fatalf("tracking %d keys, cap 50", n)
	}
}

func TestAllowAllIsAllOrNothing(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(10, 10, 100)
	l.now = func() time.Time { return clock }

	if ok, _ := l.Allow("b", 8); !ok {
		t.Fatal("first charge refused")
	}
	// a can pay 5, b cannot: nothing is taken from a either.
	ok, after := l.AllowAll(map[string]int{"a": 5, "b": 5})
	if ok || after < time.Second {
		t.Fatalf("allowed=%v retryAfter=%v, want a refusal with a wait", ok, after)
	}
	if ok, _ := l.Allow("a", 10); !ok {
		t.Fatal("a was charged for a refused request")
	}
	if ok, _ := l.Allow("b", 2); !ok {
		t.Fatal("b was charged for a refused request")
	}
	// Both can pay: both are charged.
	clock = clock.Add(time.Second)
	if ok, _ := l.AllowAll(map[string]int{"a": 10, "b": 10}); !ok {
		t.Fatal("coverable request refused")
	}
	if ok, _ := l.Allow("a", 1); ok {
		t.Fatal("a not charged")
	}
	if ok, _ := l.Allow("b", 1); ok {
		t.Fatal("b not charged")
	}
}

func TestBlocked(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(2, 4, 100)
	l.now = func() time.Time { return clock }
	if blocked, _ := l.Blocked("k"); blocked {
		t.Fatal("a new key is blocked")
	}
	if blocked, _ := l.Blocked("k"); blocked {
		t.Fatal("Blocked took tokens")
	}
	l.Allow("k", 4)
	blocked, after := l.Blocked("k")
	if !blocked || after < time.Second {
		t.Fatalf("empty bucket: blocked=%v retryAfter=%v", blocked, after)
	}
	clock = clock.Add(500 * time.Millisecond) // one unit back
	if blocked, _ := l.Blocked("k"); blocked {
		t.Fatal("still blocked after the refill")
	}
	var nilL *Limiter
	if blocked, _ := nilL.Blocked("k"); blocked {
		t.Fatal("nil limiter blocks")
	}
}
