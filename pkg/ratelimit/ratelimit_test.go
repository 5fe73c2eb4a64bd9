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
