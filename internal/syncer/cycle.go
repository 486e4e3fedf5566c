package syncer

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/store"
)

// CycleOptions select the users of one cycle.
type CycleOptions struct {
	All     bool   // include users backing off after failures
	UserID  string // only this user, ignoring its backoff
	Trigger string // "schedule" | "once", for the logs
}

// UserFailure is one user's failed sync in a Summary.
type UserFailure struct {
	UserID, Error string
}

// Summary is what a cycle did.
type Summary struct {
	RunID                                             string
	Cycle                                             int64 // the shared cycle it took users for; 0 for --user
	Due, Synced, Degraded, Failed, Skipped, Abandoned int
	// Paused counts the users the run selected that an operator paused (usage-sync pause),
	// those a pause stopped in flight included: not synced, and not a failure.
	Paused   int
	Duration time.Duration
	Failures []UserFailure
	// SkippedUsers and PausedUsers name the first of the skipped and paused users.
	SkippedUsers, PausedUsers []string
}

// OK reports whether every user the run was responsible for synced: users another live worker
// held (skipped) or an operator paused were not its to sync.
func (s Summary) OK() bool { return s.Failed == 0 && s.Abandoned == 0 }

// Line is the one-line summary --once prints on stderr.
func (s Summary) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage-sync: run %s: %d users: %d synced (%d degraded), %d failed, %d skipped (leased by another worker), %d abandoned",
		s.RunID, s.Due, s.Synced, s.Degraded, s.Failed, s.Skipped, s.Abandoned)
	if s.Paused > 0 {
		fmt.Fprintf(&b, ", %d paused", s.Paused)
	}
	fmt.Fprintf(&b, " in %s", s.Duration.Round(time.Millisecond))
	named := func(what string, n int, users []string) {
		if n == 0 {
			return
		}
		fmt.Fprintf(&b, "; %s: %s", what, strings.Join(users, " "))
		if n > len(users) {
			fmt.Fprintf(&b, " and %d more", n-len(users))
		}
	}
	named("skipped", s.Skipped, s.SkippedUsers)
	named("paused", s.Paused, s.PausedUsers)
	for i, f := range s.Failures {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(s.Failures)-3)
			break
		}
		fmt.Fprintf(&b, "; %s: %s", f.UserID, f.Error)
	}
	return b.String()
}

type outcome int

const (
	outcomeSynced outcome = iota
	outcomeDegraded
	outcomeFailed
	outcomeAbandoned
	outcomePaused // a pause fenced the sync out in flight
)

// RunCycle enrols new users, then syncs every due user with a bounded pool of workers. It returns
// an error only when the cycle cannot run at all (the database is unreachable); one user's
// failure is recorded in its sync_state and counted in the Summary, never returned.
func (s *Syncer) RunCycle(ctx context.Context, o CycleOptions) (Summary, error) {
	start := time.Now()
	sum, err := s.runCycle(ctx, o)
	if s.opts.Observer != nil {
		s.opts.Observer.CycleDone(o, sum, time.Since(start), err)
	}
	return sum, err
}

// runCycle is RunCycle without its observer (observe.go). Readers claim users and read them;
// each hands its user's final transaction to a writer and claims the next user at once, so one
// user's database work never holds up the next user's reads (see startWriters).
func (s *Syncer) runCycle(ctx context.Context, o CycleOptions) (Summary, error) {
	start := time.Now()
	sum := Summary{RunID: newID()}
	log := s.log.With(zap.String("run_id", sum.RunID))
	req, endMember, err := s.startCycle(ctx, log, o, &sum)
	if err != nil {
		return sum, err
	}
	defer endMember()
	workers := s.opts.Concurrency
	if o.UserID != "" {
		workers = 1
	}
	t := newTally(&sum, log, start)
	defer t.stop()
	jobs, writers := s.startWriters(ctx, workers, t)
	var readers sync.WaitGroup
	for range workers {
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.claimLoop(ctx, log, req, o.UserID != "", jobs, t)
		}()
	}
	readers.Wait()
	close(jobs)
	writers.Wait()
	return s.endCycle(ctx, log, req, &sum, start, t)
}

// startCycle enrols new profiles (a run for one user: only that user) and, unless the run is
// for one user, joins or starts the shared cycle; it returns what the run's claims ask for and
// the func that ends the run's membership of its cycle once its users are done.
func (s *Syncer) startCycle(ctx context.Context, log *zap.Logger, o CycleOptions, sum *Summary) (store.ClaimRequest, func(), error) {
	req := store.ClaimRequest{Owner: s.opts.WorkerID, RunID: sum.RunID, TTL: s.opts.LeaseTTL, All: o.All, UserID: o.UserID, Clock: s.clock,
		Live: s.opts.ChargeEnabled}
	endMember := func() {}
	if o.UserID != "" {
		ok, err := s.st.HasUser(ctx, o.UserID)
		if err != nil {
			return req, endMember, fmt.Errorf("start cycle: %w", err)
		}
		if !ok {
			return req, endMember, fmt.Errorf("user %s: %w", o.UserID, ErrUnknownUser)
		}
	}
	enrolled, err := s.st.Enrol(ctx, s.clock, o.UserID)
	if err != nil {
		return req, endMember, fmt.Errorf("start cycle: %w", err)
	}
	// A run for one user (--user, a webhook) takes that user once, whichever cycle took it; every
	// other run joins the cycle while another live worker is in it, so replicas split it, and
	// otherwise starts a new one (docs/design.md, "Cycles").
	cycle := store.Cycle{}
	if o.UserID == "" {
		m := store.CycleMember{RunID: sum.RunID, Worker: s.opts.WorkerID, TTL: s.opts.LeaseTTL, Clock: s.clock}
		if cycle, err = s.st.JoinCycle(ctx, m, cycleJoinWindow); err != nil {
			return req, endMember, fmt.Errorf("start cycle: %w", err)
		}
		req.Cycle, sum.Cycle = cycle.ID, cycle.ID
		endMember = s.keepMember(ctx, log, m)
	}
	log.Info("sync.cycle.start", zap.String("trigger", o.Trigger), zap.Int64("enrolled", enrolled),
		zap.Int64("cycle", cycle.ID), zap.Bool("joined", cycle.Joined), zap.Time("cycle_started_at", cycle.StartedAt),
		zap.Bool("all", o.All), zap.String("only_user", o.UserID), zap.Bool("charge_enabled", s.opts.ChargeEnabled),
		zap.Int("concurrency", s.opts.Concurrency))
	return req, endMember, nil
}

// tally counts a cycle's outcomes as readers and writers record them, and logs progress.
type tally struct {
	mu       sync.Mutex
	sum      *Summary
	log      *zap.Logger
	start    time.Time
	progress *time.Ticker
	claimErr error // the claim error that ended the cycle early, if any
}

func newTally(sum *Summary, log *zap.Logger, start time.Time) *tally {
	return &tally{sum: sum, log: log, start: start, progress: time.NewTicker(progressLogEvery)}
}

func (t *tally) stop() { t.progress.Stop() }

// record counts one user's outcome.
func (t *tally) record(user string, oc outcome, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sum := t.sum
	sum.Due++
	switch oc {
	case outcomeSynced:
		sum.Synced++
	case outcomeDegraded:
		sum.Synced++
		sum.Degraded++
	case outcomeFailed:
		sum.Failed++
		sum.Failures = append(sum.Failures, UserFailure{UserID: user, Error: err.Error()})
	case outcomeAbandoned:
		sum.Abandoned++
	case outcomePaused:
		// Not the run's to sync after all: endCycle counts it among the paused users.
		sum.Due--
	}
	select {
	case <-t.progress.C:
		t.log.Info("sync.cycle.progress", zap.Int("done", sum.Due), zap.Int("failed", sum.Failed),
			zap.Duration("elapsed", time.Since(t.start)))
	default:
	}
}

func (t *tally) claimFailed(err error) {
	t.mu.Lock()
	t.claimErr = err
	t.mu.Unlock()
}

// startWriters starts the writers that run read users' final transactions. The queue is as deep
// as there are readers: a reader waits only when every writer is busy and the queue is full,
// which bounds the plans held in memory. As many writers as readers: with half as many, a cold
// cycle's final transactions (every row new) fell behind and readers waited on the queue (2,000
// users at 20 ms: 1.37 × the latency bound, against 1.21 with as many).
func (s *Syncer) startWriters(ctx context.Context, n int, t *tally) (chan<- *held, *sync.WaitGroup) {
	jobs := make(chan *held, s.opts.Concurrency)
	var writers sync.WaitGroup
	for range n {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for h := range jobs {
				oc, err := h.apply(ctx)
				t.record(h.lease.UserID, oc, err)
			}
		}()
	}
	return jobs, &writers
}

// claimLoop is one reader: it claims the next due user, holds and reads it (held.go) and hands it
// to a writer, until no user is left, shutdown starts, or a claim fails. A single-user run
// claims once. Each claim goes out while the user before it is still being read: a claim is a
// database round trip every slot would otherwise spend before its user's first request, where
// reads in rounds cannot hide it (docs/engineering.md, "Cycles and scale"). So a reader holds at
// most two leases: the one it reads and the next.
func (s *Syncer) claimLoop(ctx context.Context, log *zap.Logger, req store.ClaimRequest, single bool, jobs chan<- *held, t *tally) {
	if ctx.Err() != nil {
		return
	}
	next := s.claim(ctx, log, req)
	for next != nil {
		c := <-next
		if c.err != nil {
			if ctx.Err() == nil {
				t.claimFailed(c.err)
			}
			return
		}
		if c.held == nil {
			return
		}
		next = nil
		if !single && ctx.Err() == nil {
			next = s.claim(ctx, log, req)
		}
		// A lease claimed as shutdown began is given back here at once: its reads fail on
		// the cancelled context and endEarly releases it.
		h := c.held
		if err := h.read(ctx); err != nil {
			oc, err := h.endEarly(ctx, err)
			t.record(h.lease.UserID, oc, err)
		} else {
			jobs <- h
		}
	}
}

// claimed is what one claim brought: a held user, nothing left to claim (both nil), or an error.
type claimed struct {
	held *held
	err  error
}

// claim claims the next due user on its own goroutine and holds it. The claim runs to completion
// even if shutdown starts meanwhile: a claim cut short can commit in the database unseen by the
// worker, leaving a lease nobody releases until it expires.
func (s *Syncer) claim(ctx context.Context, log *zap.Logger, req store.ClaimRequest) <-chan claimed {
	out := make(chan claimed, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
		lease, err := s.st.Claim(cctx, req)
		cancel()
		if err != nil || lease == nil {
			out <- claimed{err: err}
			return
		}
		h := s.hold(ctx, log, req.RunID, lease)
		if hk := s.hooks; hk != nil && hk.AfterClaim != nil {
			hk.AfterClaim(lease.UserID)
		}
		out <- claimed{held: h}
	}()
	return out
}

// endCycle counts the users left to other workers or paused and logs the cycle's summary.
func (s *Syncer) endCycle(ctx context.Context, log *zap.Logger, req store.ClaimRequest, sum *Summary, start time.Time, t *tally) (Summary, error) {
	claimErr := t.claimErr
	if left, err := s.st.LeftToOthers(context.WithoutCancel(ctx), req); err == nil {
		sum.Skipped, sum.SkippedUsers = left.Leased, left.LeasedUsers
		sum.Paused, sum.PausedUsers = left.Paused, left.PausedUsers
	}
	sum.Duration = time.Since(start)
	sort.Slice(sum.Failures, func(i, j int) bool { return sum.Failures[i].UserID < sum.Failures[j].UserID })
	fields := []zap.Field{zap.Int("users", sum.Due), zap.Int("synced", sum.Synced), zap.Int("degraded", sum.Degraded),
		zap.Int("failed", sum.Failed), zap.Int("skipped", sum.Skipped), zap.Int("abandoned", sum.Abandoned),
		zap.Int("paused", sum.Paused), zap.Duration("duration", sum.Duration)}
	if claimErr != nil {
		// The error itself is logged once, by the caller that decides what it means.
		log.Warn("sync.cycle.done", append(fields, zap.Bool("aborted", true))...)
		return *sum, fmt.Errorf("cycle %s: %w", sum.RunID, claimErr)
	}
	log.Info("sync.cycle.done", fields...)
	return *sum, nil
}
