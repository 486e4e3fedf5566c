package syncer

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ServeRequests syncs the users asked for through public.request_sync() until ctx ends: every
// poll it lists the requested users not attempted since their request and syncs each through
// RunTriggered (the single-user path --once --user and webhooks take), so a requested user goes
// ahead of the schedule and of its backoff and nobody else is synced. A user some trigger took
// less than TRIGGER_MIN_INTERVAL ago waits for a later poll. It
// polls rather than LISTENs so that it works behind Supabase's transaction pooler. Up to
// Options.Concurrency requested users sync at once.
func (s *Syncer) ServeRequests(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = RequestPollDefault
	}
	tick(ctx, every, func() bool {
		users, err := s.st.Requested(ctx, s.clock, s.opts.Concurrency*requestBatchPerWorker, s.opts.TriggerMinInterval)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("sync.requests.poll_failed", zap.Error(err))
			}
			return true
		}
		s.syncRequested(ctx, users)
		return true
	})
}

// tick calls fn every d until ctx ends or fn returns false: the loop of the request poll and
// of lease renewal.
func tick(ctx context.Context, d time.Duration, fn func() bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !fn() {
				return
			}
		}
	}
}

// syncRequested runs one single-user cycle per requested user, Concurrency at a time, and
// returns when all are done.
func (s *Syncer) syncRequested(ctx context.Context, users []string) {
	sem := make(chan struct{}, s.opts.Concurrency)
	var wg sync.WaitGroup
	for _, u := range users {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, _, err := s.RunTriggered(ctx, Trigger{UserID: u, Kind: "request", SkipBackoff: true}); err != nil && ctx.Err() == nil {
				s.log.Error("sync.cycle.failed", zap.String("user_id", u), zap.String("trigger", "request"), zap.Error(err))
			}
		}()
	}
	wg.Wait()
}
