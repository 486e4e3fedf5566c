package config

import (
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/health"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// The methods here map a Config onto the options of the components the composition root
// (internal/cli) builds: every setting a variable sets reaches its component through one line of
// this file, beside the tags that name the variables, and cli adds only what is not
// configuration (the logger, the worker id it resolved, the version, the metrics observer).

// Store is the connection pool's options and migrate's exposure check. workerID names the
// worker's connections in pg_stat_activity (application_name).
func (c Config) Store(log *zap.Logger, workerID string) store.Options {
	return store.Options{
		MaxConns:        int32(c.PoolSize()),
		PoolMode:        c.DBPoolMode,
		Logger:          log,
		AllowExposed:    c.MigrateAllowExposed,
		ApplicationName: store.ApplicationName(workerID),
	}
}

// Upstream is the upstream client every command that reads the API builds: the same
// credentials, retries, timeouts and transport rule as the daemon's.
func (c Config) Upstream(userAgent string, log *zap.Logger) upstream.Config {
	return upstream.Config{
		BaseURL:        c.UpstreamBaseURL,
		AdminToken:     c.UpstreamAdminToken,
		JWTSecret:      c.SupabaseJWTSecret,
		JWTTTL:         c.UpstreamJWTTTL,
		RequestTimeout: c.UpstreamTimeout,
		MaxElapsed:     c.UpstreamRetryMax,
		MaxRetryAfter:  c.UpstreamRetryAfter,
		AllowInsecure:  c.UpstreamAllowInsecure,
		MaxInFlight:    c.UpstreamInFlight(),
		RateLimit:      c.UpstreamRateLimit,
		UserAgent:      userAgent,
		Logger:         log,
	}
}

// Syncer is the syncer's options, for the daemon, --once, resync and verify alike.
func (c Config) Syncer(workerID string) syncer.Options {
	return syncer.Options{
		Concurrency:        c.SyncConcurrency,
		LeaseTTL:           c.SyncLeaseTTL,
		UserTimeout:        c.SyncUserTimeout,
		SettleLag:          c.SettleLag,
		TaskOverlap:        c.TaskOverlap,
		RevisionWindow:     c.RevisionWindow,
		RevisionInterval:   revisionInterval(c.RevisionInterval),
		FailureBackoffBase: c.FailureBackoffBase,
		FailureBackoffMax:  c.FailureBackoffMax,
		TriggerMinInterval: c.TriggerMinInterval,
		MaxBackfillDays:    c.MaxBackfillDays,
		ChargeEnabled:      c.ChargeEnabled,
		ChargeFrom:         c.ChargeFrom,
		WorkerID:           workerID,
	}
}

// revisionInterval maps REVISION_INTERVAL to the syncer's option, where zero means "the default"
// and REVISION_INTERVAL=0 means every cycle.
func revisionInterval(d time.Duration) time.Duration {
	if d == 0 {
		return syncer.RevisionEveryCycle
	}
	return d
}

// MetricsListen is the address the probe and metrics listener binds, or "" for none: METRICS_ADDR
// when set and not off; when unset, health.AddrDefault for the daemon and none for --once (a
// one-shot run is usually not scraped, and the default port may be a daemon's on the same host).
func (c Config) MetricsListen(once bool) string {
	switch {
	case c.MetricsAddr == MetricsOff:
		return ""
	case c.MetricsAddr != "":
		return c.MetricsAddr
	case once:
		return ""
	default:
		return health.AddrDefault
	}
}
