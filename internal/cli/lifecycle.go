package cli

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/usage-sync/usage-sync/internal/schedule"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// daemon runs the daemon's parts under one lifecycle (runParts). They start in this order, each
// once the one before it is up, and stop in the reverse order, each once the one after it has
// returned, whether a signal or a part's failure began the shutdown:
//
//  1. metrics: the probes and /metrics. First up, so /livez and /readyz answer while the
//     database is awaited; last down, so they answer until the end (/livez turns 503 as the
//     shutdown begins, /readyz keeps telling the database's state).
//  2. database: the wait for the database at start (waitForDatabase); nothing to stop.
//  3. requests: the poll for users the dashboard asked for (public.request_sync()).
//  4. schedule: the cron schedule. Stopping it waits for the cycle in flight, whose reads are
//     abandoned (their users released for the next run) and whose writes finish.
//  5. webhooks: the listener and its queue. First down: once the daemon stops it takes no
//     delivery, and the sync the queue runs is abandoned like the schedule's.
//
// With SYNC_ENABLED off only the first two run, and the log says why nothing is scheduled.
func (a *app) daemon(ctx context.Context, sy *syncer.Syncer, ob *ops) error {
	var parts []part
	if ob != nil {
		parts = append(parts, ob.part(a))
	}
	parts = append(parts, part{name: "database", starting: "waiting for the database", start: a.waitForDatabase})
	if !a.cfg.SyncEnabled {
		parts = append(parts, part{name: "schedule", start: func(context.Context) error {
			a.log.Info("schedule.disabled", zap.String("why",
				"SYNC_ENABLED is not true: the daemon schedules nothing; set SYNC_ENABLED=true to sync, or run `usage-sync --once`"))
			return nil
		}})
	} else {
		parts = append(parts, a.requestsPart(sy), a.schedulePart(sy))
		if a.cfg.WebhookAddr != "" {
			parts = append(parts, a.webhookPart(sy))
		}
	}
	err := runParts(ctx, a.log, parts, func() {
		if ob != nil {
			ob.stopping.Store(true)
		}
	})
	var pe *partError
	if errors.As(err, &pe) {
		return a.fail(pe.code, pe.part, pe.err)
	}
	return err
}

// requestsPart serves the users the dashboard asked for, ahead of the schedule.
func (a *app) requestsPart(sy *syncer.Syncer) part {
	return part{name: "requests", run: func(ctx context.Context) error {
		sy.ServeRequests(ctx, a.cfg.SyncRequestPoll)
		return nil
	}}
}

// schedulePart runs a cycle on SYNC_SCHEDULE.
func (a *app) schedulePart(sy *syncer.Syncer) part {
	return part{name: "schedule", code: ExitUsage, run: func(ctx context.Context) error {
		return schedule.Run(ctx, a.cfg.SyncSchedule, a.log, func(ctx context.Context) {
			// A cycle that cannot run (database down) is retried at the next tick, not fatal.
			if _, err := sy.RunCycle(ctx, syncer.CycleOptions{Trigger: "schedule"}); err != nil {
				a.log.Error("sync.cycle.failed", zap.Error(err))
			}
		})
	}}
}

// part is one piece of the daemon in its lifecycle.
type part struct {
	// name names the part in the log and, when it fails, is run.failed's stage.
	name string
	// starting says what start is doing, for daemon.stopped when a signal interrupts it.
	starting string
	// start brings the part up and returns once it is: it binds what can fail at once (a port)
	// or waits for what the parts after it need (the database). ctx ends on a signal or when a
	// part already running dies. nil: nothing to bring up.
	start func(ctx context.Context) error
	// run serves until ctx ends, then releases everything the part holds (listeners,
	// goroutines, the cycle in flight) and returns nil. An error, or a return before ctx ends,
	// is the part dying, and the daemon stops. nil: nothing runs once started.
	run func(ctx context.Context) error
	// code is the exit code when the part fails; 0 means ExitRuntime.
	code int
}

// partError is a part's failure, at start or once running: it stopped the daemon.
type partError struct {
	part string
	code int
	err  error
}

func (e *partError) Error() string { return e.part + ": " + e.err.Error() }
func (e *partError) Unwrap() error { return e.err }

func (p part) fail(err error) *partError {
	code := p.code
	if code == 0 {
		code = ExitRuntime
	}
	return &partError{part: p.name, code: code, err: err}
}

// runParts is the daemon's one lifecycle. It starts parts in order, each once the one before is
// up, runs them under one errgroup, and has one shutdown path: on a signal (ctx) or the first
// failure, at start or later, it calls stopping once and then stops the started parts in the
// reverse order, one at a time, each by cancelling its own context and waiting for its run to
// return. It returns nil after a signal, or the *partError of the part that stopped the daemon.
//
// Each part's context is its own, not ctx's child, so that a signal stops nothing by itself:
// only this shutdown path does, in its order.
func runParts(ctx context.Context, log *zap.Logger, parts []part, stopping func()) error {
	g, died := errgroup.WithContext(context.WithoutCancel(ctx))
	// down ends on a signal or when a running part dies; it cuts a start short.
	down, cancelDown := context.WithCancel(ctx)
	defer cancelDown()
	defer context.AfterFunc(died, cancelDown)()

	var up []started
	var names []string // of the parts up, in start order
	var failed *partError
	interrupted := ""
	for _, p := range parts {
		if down.Err() != nil {
			break
		}
		if p.start != nil {
			if err := p.start(down); err != nil {
				if down.Err() != nil {
					// A signal, or a part already running died: not this part's failure.
					interrupted = p.starting
					break
				}
				failed = p.fail(err)
				break
			}
		}
		names = append(names, p.name)
		if p.run != nil {
			up = append(up, launch(ctx, g, p))
		}
	}
	if failed == nil && down.Err() == nil {
		log.Info("daemon.started", zap.Strings("parts", names))
		<-down.Done()
	}

	cause := "signal"
	switch {
	case failed != nil:
		cause = failed.Error()
	case died.Err() != nil:
		cause = context.Cause(died).Error()
	}
	log.Info("daemon.stopping", zap.String("cause", cause))
	stopping()
	for i := len(up) - 1; i >= 0; i-- {
		up[i].stop()
		<-up[i].done
		log.Debug("daemon.part_stopped", zap.String("part", up[i].name))
	}
	err := g.Wait()
	if failed != nil {
		return failed
	}
	if err != nil {
		return err
	}
	if interrupted != "" {
		log.Info("daemon.stopped", zap.String("while", interrupted))
	} else {
		log.Info("daemon.stopped")
	}
	return nil
}

// started is a part whose run runs in runParts' group.
type started struct {
	name string
	stop context.CancelFunc
	done chan struct{} // closed once run has returned
}

// launch runs p in g with a context of its own, which only stop cancels.
func launch(ctx context.Context, g *errgroup.Group, p part) started {
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	g.Go(func() error {
		defer close(done)
		err := p.run(pctx)
		if err == nil && pctx.Err() == nil {
			err = fmt.Errorf("%s stopped by itself", p.name)
		}
		if err != nil {
			return p.fail(err)
		}
		return nil
	})
	return started{name: p.name, stop: stop, done: done}
}
