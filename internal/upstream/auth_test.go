package upstream

import (
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestJWTMinterClaimsAndCache(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	m := newJWTMinter("sec", 5*time.Minute, clock)

	tok, err := m.token("user-1")
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte("sec"), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience("authenticated"), jwt.WithTimeFunc(clock))
	if err != nil || !parsed.Valid {
		t.Fatalf("token does not verify with the secret: %v", err)
	}
	if sub, _ := claims.GetSubject(); sub != "user-1" {
		t.Errorf("sub = %q, want user-1", sub)
	}
	if claims["role"] != "authenticated" {
		t.Errorf("role = %v, want authenticated", claims["role"])
	}
	exp, _ := claims.GetExpirationTime()
	if exp == nil || !exp.Equal(now.Add(5*time.Minute)) {
		t.Errorf("exp = %v, want %v", exp, now.Add(5*time.Minute))
	}
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte("other"), nil }); err == nil {
		t.Error("token verifies with the wrong secret")
	}

	again, _ := m.token("user-1")
	other, _ := m.token("user-2")
	if again != tok || other == tok {
		t.Error("cache: want the same token for the same user and a different one for another user")
	}
	advance(4*time.Minute + 31*time.Second) // inside the 30 s refresh margin
	fresh, _ := m.token("user-1")
	if fresh == tok {
		t.Error("token reused within 30 s of its expiry")
	}
}

func TestJWTMinterConcurrent(t *testing.T) {
	t.Parallel()
	m := newJWTMinter("sec", time.Minute, time.Now)
	var wg sync.WaitGroup
	tokens := make([]string, 16)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens[i], _ = m.token("same-user")
		}()
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok == "" || tok != tokens[0] {
			t.Fatal("concurrent callers for one user got different or empty tokens")
		}
	}
}
