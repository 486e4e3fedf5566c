package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/safetext"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// upstreamConfig is the upstream client every command that reads the API builds: the same
// retries, timeouts and pacing as the daemon's.
func upstreamConfig(cfg config.Config) upstream.Config {
	return upstream.Config{
		BaseURL:        cfg.UpstreamBaseURL,
		AdminToken:     cfg.UpstreamAdminToken,
		JWTSecret:      cfg.SupabaseJWTSecret,
		JWTTTL:         cfg.UpstreamJWTTTL,
		RequestTimeout: cfg.UpstreamTimeout,
		MaxElapsed:     cfg.UpstreamRetryMax,
		MaxRetryAfter:  cfg.UpstreamRetryAfter,
		UserAgent:      "usage-sync/" + version,
	}
}

// syncerOptions are the syncer's options from the configuration, for the daemon, --once and
// resync alike.
func syncerOptions(cfg config.Config, workerID string) syncer.Options {
	return syncer.Options{
		Concurrency:        cfg.SyncConcurrency,
		LeaseTTL:           cfg.SyncLeaseTTL,
		UserTimeout:        cfg.SyncUserTimeout,
		SettleLag:          cfg.SettleLag,
		TaskOverlap:        cfg.TaskOverlap,
		RevisionWindow:     cfg.RevisionWindow,
		RevisionInterval:   revisionInterval(cfg.RevisionInterval),
		FailureBackoffBase: cfg.FailureBackoffBase,
		FailureBackoffMax:  cfg.FailureBackoffMax,
		MaxBackfillDays:    cfg.MaxBackfillDays,
		ChargeEnabled:      cfg.ChargeEnabled,
		ChargeFrom:         cfg.ChargeFrom,
		WorkerID:           workerID,
	}
}

// upstreamClient builds the client for a command that reads the API outside the daemon.
func (a *app) upstreamClient() (*upstream.Client, error) {
	up, err := upstream.New(upstreamConfig(a.cfg))
	if err != nil {
		return nil, a.fail(ExitRuntime, "configure upstream", fmt.Errorf("configure upstream client: %w", err))
	}
	return up, nil
}

// dayFlag parses a --from/--to value: a UTC day as YYYY-MM-DD, or "" for none.
func dayFlag(name, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return nil, fmt.Errorf("--%s %q is not a day: give a UTC day as YYYY-MM-DD, such as 2026-11-08", name, v)
	}
	return &d, nil
}

// userFlag normalises a --user value; ok is false when it is not a UUID.
func userFlag(v string) (string, bool) {
	u := strings.ToLower(strings.TrimSpace(v))
	return u, safetext.IsUUID(u)
}
