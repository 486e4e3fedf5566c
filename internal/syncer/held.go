package syncer

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/logging"
	"github.com/usage-sync/usage-sync/internal/store"
)

// One user's sync, from its claim to its end, is one held lease (claimLoop and startWriters in
// cycle.go drive it):
//
//	h := s.hold(ctx, log, runID, lease) // just after the claim: renews the lease from here on
//	err := h.read(ctx)                 // a reader: reads the upstream
//	if err != nil {
//		h.endEarly(ctx, err)           // given back, lost or failed: the sync ends on the reader
//	} else {
//		jobs <- h                      // the plan waits for a writer, the lease still renewed
//	}
//	h.apply(ctx)                       // a writer: the final transaction, and the sync ends
//
// Whichever goroutine ends the sync stops the renewal, and only then says how it ended.

// held is one claimed user being synced: its lease, renewed until the sync ends, and what its
// reads produced for the writer.
type held struct {
	s       *Syncer
	runID   string
	lease   *store.Lease
	log     *zap.Logger
	started time.Time // when its reads began
	renewal *renewal
	// gone is cancelled when a renewal finds the lease lost; it cancels the reads.
	gone context.Context
	plan *store.Plan // read's, for apply
	res  userResult
}

// hold takes charge of a user the run has just claimed and starts renewing its lease, which goes
// on until the sync ends: a reader may claim its next user while it still reads the current one
// (claimLoop), so a lease can wait a while before its reads begin.
func (s *Syncer) hold(ctx context.Context, runLog *zap.Logger, runID string, lease *store.Lease) *held {
	h := &held{s: s, runID: runID, lease: lease, log: runLog.With(zap.String("user_id", lease.UserID))}
	// Renewal outlives the reads (and shutdown): it stops when the sync ends, on whichever
	// goroutine; a renewal that finds the lease lost cancels the reads through gone.
	gone, onLost := context.WithCancel(context.WithoutCancel(ctx))
	h.gone = gone
	h.renewal = s.keepLease(ctx, h.log, lease, onLost)
	return h
}

// read reads the user within SYNC_USER_TIMEOUT. nil: the plan is ready for a writer (apply);
// otherwise the sync ends on the reader (endEarly). A lease lost meanwhile, or before the reads
// began, is ErrLeaseLost whatever the reads returned.
func (h *held) read(ctx context.Context) error {
	h.started = time.Now()
	ctx = logging.WithLogger(ctx, h.log)
	readCtx, cancel := context.WithTimeoutCause(ctx, h.s.opts.UserTimeout, errUserTimeout)
	defer cancel()
	defer context.AfterFunc(h.gone, cancel)()
	plan, res, err := h.s.readUser(readCtx, h.log, h.runID, h.lease)
	switch {
	case h.renewal.lost():
		return store.ErrLeaseLost
	case err != nil && errors.Is(context.Cause(readCtx), errUserTimeout) && !errors.Is(err, errUserTimeout):
		return fmt.Errorf("%w: %w", errUserTimeout, err)
	}
	h.plan, h.res = plan, res
	return err
}

// endEarly ends a sync whose reads did not complete. At shutdown the user is given back: the
// chunks already applied are kept (the next sync finds them done). A lost lease was a pause or
// another worker's takeover; anything else is a failure, recorded with its backoff.
func (h *held) endEarly(ctx context.Context, err error) (outcome, error) {
	h.renewal.end()
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		return h.lost(ctx), err
	case ctx.Err() != nil:
		if rerr := h.s.st.Release(context.WithoutCancel(ctx), h.lease); rerr != nil {
			h.log.Warn("sync.user.release_failed", zap.Error(rerr))
		}
		h.log.Warn("sync.user.abandoned", zap.String("reason", "shutdown"), zap.Duration("duration", time.Since(h.started)))
		return outcomeAbandoned, err
	}
	return outcomeFailed, h.fail(ctx, err)
}

// apply runs the user's final transaction, on a writer, and ends the sync. The transaction's
// own fence decides whether the lease still held: a renewal that raced with its commit and found
// the lease released must not turn a committed sync into a lost one. It runs to completion even
// during shutdown (applyUser), so a failure here is a failure, never an abandoned sync.
func (h *held) apply(ctx context.Context) (outcome, error) {
	err := h.s.applyUser(ctx, h.log, h.lease, h.plan, &h.res)
	h.renewal.end()
	if hk := h.s.hooks; hk != nil && hk.AfterFinish != nil {
		defer hk.AfterFinish(h.lease.UserID)
	}
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		return h.lost(ctx), err
	case err != nil:
		return outcomeFailed, h.fail(ctx, err)
	}
	h.log.Info("sync.user.done", append(h.res.fields(), zap.Duration("duration", time.Since(h.started)))...)
	if h.res.applied.Status == "degraded" {
		return outcomeDegraded, nil
	}
	return outcomeSynced, nil
}

// lost logs a sync that lost its lease and says what it was: stopped by usage-sync pause (the
// pause took the lease; nothing was written after it) or abandoned (another worker took the user
// over after the lease expired).
func (h *held) lost(ctx context.Context) outcome {
	if paused, err := h.s.st.IsPaused(context.WithoutCancel(ctx), h.lease.UserID); err == nil && paused {
		h.log.Info("sync.user.paused", zap.Duration("duration", time.Since(h.started)))
		return outcomePaused
	}
	h.log.Warn("sync.user.lease_lost", zap.Duration("duration", time.Since(h.started)))
	return outcomeAbandoned
}

// fail records a failed sync in sync_state with its backoff and logs it once.
func (h *held) fail(ctx context.Context, err error) error {
	s, lease, log := h.s, h.lease, h.log
	took := time.Since(h.started)
	kind, retryAfter := classify(err)
	// A Retry-After may lengthen the wait, never past FAILURE_BACKOFF_MAX: it is the server's
	// advice, and one reply must not park a user for a day (or, as an HTTP date, for centuries).
	backoff := min(max(s.backoff(lease.ConsecutiveFailures), retryAfter), s.opts.FailureBackoffMax)
	msg := errorText(err)
	fields := append([]zap.Field{zap.String("error", msg), zap.String("kind", kind),
		zap.Int("consecutive_failures", lease.ConsecutiveFailures+1)}, failureFields(err)...)
	// The log keeps the whole text; sync_state, which the user reads, gets userText.
	next, rerr := s.st.RecordFailure(context.WithoutCancel(ctx), lease, store.Failure{RunID: h.runID, Error: userText(err, kind, h.runID), Kind: kind, Backoff: backoff})
	if rerr != nil && !errors.Is(rerr, store.ErrLeaseLost) {
		// Give the user back rather than hold its lease until it expires.
		if relErr := s.st.Release(context.WithoutCancel(ctx), lease); relErr != nil {
			log.Warn("sync.user.release_failed", zap.Error(relErr))
		}
	}
	if rerr != nil {
		log.Error("sync.user.record_failed", zap.Error(rerr), zap.String("sync_error", msg))
	} else {
		fields = append(fields, zap.Time("next_attempt_at", next))
	}
	log.Error("sync.user.failed", append(fields, zap.Duration("duration", took))...)
	return &cleanError{text: msg, err: err}
}

// backoff grows exponentially with the failures so far, with ±20% jitter so users that failed
// together do not retry together; fail clamps the result to FailureBackoffMax.
func (s *Syncer) backoff(failures int) time.Duration {
	d := float64(s.opts.FailureBackoffBase) * math.Pow(2, float64(min(failures, 30)))
	d = min(d, float64(s.opts.FailureBackoffMax))
	return time.Duration(d * (0.8 + 0.4*mrand.Float64()))
}

// renewal keeps one lease alive in the background, every third of its TTL, until end. It
// ignores its context's cancellation: a lease is held through shutdown until its sync ends.
type renewal struct {
	gone <-chan struct{} // closed when a renewal found the lease lost
	stop context.CancelFunc
	done <-chan struct{}
}

// keepLease starts renewing lease (a sync's or a resync's). A renewal that finds the lease lost
// stops renewing and calls onLost, which cancels what the lease was held for.
func (s *Syncer) keepLease(ctx context.Context, log *zap.Logger, lease *store.Lease, onLost context.CancelFunc) *renewal {
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	gone, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick(rctx, s.opts.LeaseTTL/3, func() bool {
			err := s.st.Renew(rctx, lease, s.opts.LeaseTTL)
			if errors.Is(err, store.ErrLeaseLost) {
				close(gone)
				onLost()
				return false
			}
			if err != nil && rctx.Err() == nil {
				log.Warn("sync.lease.renew_failed", zap.Error(err))
			}
			if err == nil && s.hooks != nil && s.hooks.AfterRenew != nil {
				s.hooks.AfterRenew(lease.UserID)
			}
			return true
		})
	}()
	return &renewal{gone: gone, stop: stop, done: done}
}

// lost reports whether a renewal found the lease lost.
func (r *renewal) lost() bool {
	select {
	case <-r.gone:
		return true
	default:
		return false
	}
}

// end stops the renewals and returns once none is in flight.
func (r *renewal) end() {
	r.stop()
	<-r.done
}
