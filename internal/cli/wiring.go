package cli

import (
	"context"
	"fmt"
	"io"
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
		AllowInsecure:  cfg.UpstreamAllowInsecure,
		MaxInFlight:    cfg.UpstreamInFlight(),
		RateLimit:      cfg.UpstreamRateLimit,
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
		TriggerMinInterval: cfg.TriggerMinInterval,
		MaxBackfillDays:    cfg.MaxBackfillDays,
		ChargeEnabled:      cfg.ChargeEnabled,
		ChargeFrom:         cfg.ChargeFrom,
		WorkerID:           workerID,
	}
}

// startOperator starts an operator's command (resync, verify): the configuration as --once
// validates it, the database at the schema this binary needs, and a syncer on the configured
// upstream client. The caller closes the app.
func startOperator(ctx context.Context, getenv func(string) string, stderr io.Writer) (*app, *syncer.Syncer, error) {
	a, err := start(ctx, getenv, config.ModeSync, stderr)
	if err != nil {
		return nil, nil, err
	}
	if err := a.st.CheckSchema(a.startupCtx); err != nil {
		defer a.close()
		return nil, nil, a.fail(ExitRuntime, "check schema", err)
	}
	up, err := upstream.New(upstreamConfig(a.cfg))
	if err != nil {
		defer a.close()
		return nil, nil, a.fail(ExitRuntime, "configure upstream", fmt.Errorf("configure upstream client: %w", err))
	}
	a.stopStartup()
	return a, syncer.New(a.st, up, a.log, syncerOptions(a.cfg, a.workerID)), nil
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
