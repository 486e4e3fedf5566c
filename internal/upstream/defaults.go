package upstream

import "time"

// The defaults of Config, each in one place: New gives them to zero fields, and internal/config
// reads them for its variables' defaults and its --help table.
const (
	// JWTTTLDefault is the lifetime of a minted user JWT (UPSTREAM_JWT_TTL).
	JWTTTLDefault = 5 * time.Minute
	// JWTTTLMax bounds UPSTREAM_JWT_TTL: a minted token that leaks is good for at most this long.
	JWTTTLMax = 15 * time.Minute
	// TimeoutDefault bounds one HTTP attempt (UPSTREAM_TIMEOUT).
	TimeoutDefault = 30 * time.Second
	// MaxElapsedDefault is the retry budget of one call, waits included
	// (UPSTREAM_RETRY_MAX_ELAPSED).
	MaxElapsedDefault = 2 * time.Minute
	// MaxRetryAfterDefault caps an honoured Retry-After (UPSTREAM_RETRY_AFTER_MAX).
	MaxRetryAfterDefault = 60 * time.Second
	// InitialBackoffDefault is the first wait between attempts.
	InitialBackoffDefault = 500 * time.Millisecond
	// MaxBackoffDefault caps the wait between attempts.
	MaxBackoffDefault = 20 * time.Second
	// UserAgentDefault is the User-Agent header.
	UserAgentDefault = "usage-sync"
)
