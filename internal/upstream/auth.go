package upstream

import (
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// tokenSource yields the bearer token for a call on behalf of a user.
type tokenSource interface {
	token(userID string) (string, error)
	// admin reports whether calls must name the user with user_id=.
	admin() bool
}

type adminToken string

func (a adminToken) token(string) (string, error) { return string(a), nil }
func (adminToken) admin() bool                    { return true }

// jwtRefreshMargin keeps a cached token from expiring while a call, with its retries, is
// still in flight.
const jwtRefreshMargin = 30 * time.Second

// maxCachedJWTs bounds the cache; past it, expired entries are swept on the next mint.
const maxCachedJWTs = 4096

// jwtMinter mints Supabase-style user JWTs and caches one per user until shortly before it
// expires, so a sync cycle does not sign a token per request.
type jwtMinter struct {
	secret []byte
	ttl    time.Duration
	clock  clock.Clock

	mu    sync.Mutex
	cache map[string]cachedJWT
}

type cachedJWT struct {
	token   string
	expires time.Time
}

func newJWTMinter(secret string, ttl time.Duration, clk clock.Clock) *jwtMinter {
	return &jwtMinter{secret: []byte(secret), ttl: ttl, clock: clk, cache: make(map[string]cachedJWT)}
}

func (*jwtMinter) admin() bool { return false }

func (m *jwtMinter) token(userID string) (string, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cache[userID]; ok && now.Before(c.expires.Add(-jwtRefreshMargin)) {
		return c.token, nil
	}
	exp := now.Add(m.ttl)
	claims := jwt.MapClaims{
		"sub":  userID,
		"aud":  "authenticated",
		"role": "authenticated",
		"iat":  now.Unix(),
		"exp":  exp.Unix(),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(m.secret)
	if err != nil {
		return "", fmt.Errorf("sign user JWT: %w", err)
	}
	if len(m.cache) >= maxCachedJWTs {
		for u, c := range m.cache {
			if !now.Before(c.expires.Add(-jwtRefreshMargin)) {
				delete(m.cache, u)
			}
		}
	}
	m.cache[userID] = cachedJWT{token: signed, expires: exp}
	return signed, nil
}
