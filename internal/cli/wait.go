package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/store"
)

// How the daemon waits for its database at start: an attempt at once, then retries with
// exponential backoff (doubling, ±50% jitter) from dbWaitFirst to dbWaitMax between attempts,
// for as long as it takes (a signal ends the wait). Fixed, not configurable: the point is to
// come up soon after the database does, without hammering it meanwhile.
const (
	dbWaitFirst = time.Second
	dbWaitMax   = 30 * time.Second
	// dbWaitAttempt bounds one attempt (the connect timeout usually ends it sooner).
	dbWaitAttempt = 15 * time.Second
)

// waitForDatabase returns once the database answers with the schema this binary needs, logging
// each failed attempt with its reason; it returns ctx's error if a signal comes first. Meanwhile
// the probes answer: /livez 200, /readyz 503.
func (a *app) waitForDatabase(ctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.Multiplier, b.MaxInterval, b.MaxElapsedTime = dbWaitFirst, 2, dbWaitMax, 0
	attempt := 0
	try := func() error {
		attempt++
		actx, cancel := context.WithTimeout(ctx, dbWaitAttempt)
		defer cancel()
		// The driver's error in full: this is the worker's log (the probe's body says less).
		switch err := a.st.Ready(actx); {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrSchemaOutdated):
			return fmt.Errorf("schema behind: %w", err)
		default:
			return fmt.Errorf("database unreachable: %w", err)
		}
	}
	notify := func(err error, wait time.Duration) {
		a.log.Warn("daemon.database_wait", zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
	}
	if err := backoff.RetryNotify(try, backoff.WithContext(b, ctx), notify); err != nil {
		return err
	}
	if attempt > 1 {
		a.log.Info("daemon.database_ready", zap.Int("attempts", attempt))
	}
	return nil
}
