// Package schedule runs the sync cycle on a cron spec in UTC, never two cycles at once.
package schedule

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"
)

// Parse checks spec the way Run reads it: a standard 5-field cron spec (minute hour day-of-month
// month day-of-week) or a descriptor such as "@hourly" or "@every 1m", always in UTC.
func Parse(spec string) (cron.Schedule, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, fmt.Errorf("empty schedule")
	}
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		// The contract says UTC; a per-spec zone would make "last synced" times hard to reason about.
		return nil, fmt.Errorf("time zone prefixes are not accepted, the schedule is always UTC")
	}
	if !strings.HasPrefix(s, "@") {
		// robfig's message lists the fields back; a count is all a reader needs.
		if n := len(strings.Fields(s)); n != 5 {
			return nil, fmt.Errorf("expected 5 fields, found %d", n)
		}
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		return nil, err
	}
	return sched, nil
}

// Run calls job on spec's schedule until ctx is done, then waits for a running job to return and
// returns nil. A run that comes due while the previous one still runs is skipped, and a panicking
// job is logged and does not stop later runs. job gets ctx itself: stopping cron cancels nothing,
// so a job learns of shutdown only through ctx.
func Run(ctx context.Context, spec string, log *zap.Logger, job func(ctx context.Context)) error {
	sched, err := Parse(spec)
	if err != nil {
		return fmt.Errorf("parse schedule %q: %w", spec, err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return run(ctx, sched, spec, log, job)
}

// run is Run on a parsed schedule, so tests can drive it faster than cron's one-second grain.
func run(ctx context.Context, sched cron.Schedule, spec string, log *zap.Logger, job func(ctx context.Context)) error {
	logger := cronLogger{log: log}
	c := cron.New(
		cron.WithLocation(time.UTC),
		cron.WithLogger(logger),
		// Recover sits inside SkipIfStillRunning: robfig's skip wrapper returns its token without a
		// defer, so a panic escaping into it would make every later run a skip.
		cron.WithChain(cron.SkipIfStillRunning(logger), cron.Recover(logger)),
	)
	c.Schedule(sched, cron.FuncJob(func() { job(ctx) }))
	c.Start()
	log.Info("schedule.started", zap.String("spec", spec), zap.Time("next", sched.Next(time.Now().UTC())))
	<-ctx.Done()
	<-c.Stop().Done()
	log.Info("schedule.stopped", zap.String("spec", spec))
	return nil
}

// cronLogger turns cron's log calls into the worker's event names. Only skips and panics matter
// to an operator; cron's own bookkeeping (start, wake, run, ...) goes to debug.
type cronLogger struct {
	log *zap.Logger
}

func (l cronLogger) Info(msg string, keysAndValues ...any) {
	switch msg {
	case "skip":
		l.log.Warn("schedule.skipped", zap.String("reason", "the previous cycle is still running"))
	default:
		l.log.Debug("schedule."+msg, fields(keysAndValues)...)
	}
}

func (l cronLogger) Error(err error, msg string, keysAndValues ...any) {
	name := "schedule.error"
	if msg == "panic" {
		name = "schedule.panic"
	}
	l.log.Error(name, append(fields(keysAndValues), zap.Error(err))...)
}

func fields(kv []any) []zap.Field {
	out := make([]zap.Field, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, zap.Any(fmt.Sprint(kv[i]), kv[i+1]))
	}
	return out
}
