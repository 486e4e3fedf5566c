package cli

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/health"
	"github.com/usage-sync/usage-sync/internal/metrics"
	"github.com/usage-sync/usage-sync/internal/store"
)

// ops is the probe and metrics side of a run, built only when the run serves them
// (config.MetricsListen).
type ops struct {
	addr    string // where listen binds
	metrics *metrics.Metrics
	srv     *health.Server
	log     *zap.Logger
	// stopping is set when the daemon's shutdown begins: /livez fails from then on, while the
	// server, stopped last, still answers.
	stopping atomic.Bool
}

// newOps builds the metrics; listen serves them.
func (a *app) newOps(addr string) *ops {
	return &ops{addr: addr, metrics: metrics.New(a.st, a.log), log: a.log}
}

// listen starts the probe and metrics listener on its address (METRICS_ADDR).
func (o *ops) listen(a *app) error {
	checks := health.Checks{
		Live: func() error {
			if o.stopping.Load() {
				return errors.New("the daemon is stopping")
			}
			return nil
		},
		Ready: func(ctx context.Context) error { return readiness(ctx, a.st, a.log) },
	}
	srv, err := health.Listen(o.addr, health.Handler(checks, o.metrics.Registry(), a.log))
	if err != nil {
		return err
	}
	o.srv = srv
	a.log.Info("metrics.listening", zap.String("addr", srv.Addr()),
		zap.Strings("paths", []string{health.LivePath, health.ReadyPath, health.MetricsPath}))
	return nil
}

// part is the probe and metrics server in the daemon's lifecycle (daemon): first up, last down.
func (o *ops) part(a *app) part {
	return part{
		name:  "metrics",
		start: func(context.Context) error { return o.listen(a) },
		run: func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				o.srv.Close(ctx)
				return nil
			case <-o.srv.Done():
				if err := o.srv.Err(); err != nil {
					return fmt.Errorf("serve probes and metrics on METRICS_ADDR %s: %w", o.addr, err)
				}
				return nil // the lifecycle reports a part that stops by itself
			}
		},
	}
}

// readiness is /readyz's check: the database answers and its schema is the binary's. A probe's
// body is readable by whoever reaches the port, so an unreachable database is named only as
// such; the driver's error (host, role, database) goes to the log as health.not_ready.
func readiness(ctx context.Context, st *store.Store, log *zap.Logger) error {
	err := st.Ready(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrSchemaOutdated):
		return fmt.Errorf("schema behind: %w", err)
	default:
		log.Warn("health.not_ready", zap.Error(err))
		return errors.New("database unreachable (the worker's log has the driver's error: health.not_ready)")
	}
}

// close stops --once's listener; the daemon's stops in its lifecycle.
func (o *ops) close(ctx context.Context) {
	if o == nil || o.srv == nil {
		return
	}
	o.srv.Close(ctx)
	if err := o.srv.Err(); err != nil {
		o.log.Error("metrics.serve_failed", zap.Error(err))
	}
}
