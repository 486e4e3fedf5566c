// Package syncer runs sync cycles: it claims due users, reads their usage and tasks from the
// upstream, and hands each user's complete result to the store to apply atomically.
package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/logging"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// ErrUnknownUser means CycleOptions.UserID names no row of profiles.
var ErrUnknownUser = errors.New("no such user in profiles")

// errUserTimeout ends a user's sync that ran past SYNC_USER_TIMEOUT.
var errUserTimeout = errors.New("user sync ran past SYNC_USER_TIMEOUT")

// Upstream is what the syncer reads; *upstream.Client implements it.
type Upstream interface {
	ListKeys(ctx context.Context, userID string, from, to *time.Time) (upstream.KeyList, error)
	APIUsage(ctx context.Context, userID string, from, to *time.Time) (upstream.UsageMetrics, error)
	ListTasks(ctx context.Context, userID string, q upstream.TaskQuery) (upstream.TaskPage, error)
}

// Options tune a Syncer; zero values take the …Default constants of defaults.go.
type Options struct {
	Concurrency        int
	LeaseTTL           time.Duration
	UserTimeout        time.Duration
	SettleLag          time.Duration
	TaskOverlap        time.Duration
	RevisionWindow     time.Duration
	FailureBackoffBase time.Duration
	FailureBackoffMax  time.Duration
	MaxBackfillDays    int
	ChargeEnabled      bool
	ChargeFrom         *time.Time // nil → each user's go-live (Lease.LiveAt; the enrolment in shadow mode)
	WorkerID           string
	// Now is the sync's clock. nil (production): day windows read time.Now, and leases, attempts,
	// backoff, cycles, revision sweeps and the revision window use the database's now(), the one
	// clock every replica shares. Tests set it, and then everything that decides time runs on
	// it, in Go and in SQL.
	Now      func() time.Time
	Observer Observer // nil: nothing observes (see observe.go)

	// RevisionInterval is how often finished tasks are re-read for revisions: zero takes
	// RevisionIntervalDefault, RevisionEveryCycle (REVISION_INTERVAL=0) sweeps every cycle.
	RevisionInterval time.Duration
	// MaxTaskPages caps the pages of one task listing pass; zero takes MaxTaskPagesDefault.
	MaxTaskPages int
	// TriggerMinInterval is the least time between two triggered syncs of one user (RunTriggered);
	// zero takes TriggerMinIntervalDefault.
	TriggerMinInterval time.Duration
}

// RevisionEveryCycle as Options.RevisionInterval re-reads finished tasks on every cycle.
const RevisionEveryCycle time.Duration = -1

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = ConcurrencyDefault
	}
	def(&o.LeaseTTL, LeaseTTLDefault)
	def(&o.UserTimeout, UserTimeoutDefault)
	def(&o.SettleLag, SettleLagDefault)
	def(&o.TaskOverlap, TaskOverlapDefault)
	def(&o.RevisionWindow, RevisionWindowDefault)
	if o.RevisionInterval == 0 {
		o.RevisionInterval = RevisionIntervalDefault
	}
	if o.MaxTaskPages <= 0 {
		o.MaxTaskPages = MaxTaskPagesDefault
	}
	def(&o.FailureBackoffBase, FailureBackoffBaseDefault)
	def(&o.FailureBackoffMax, FailureBackoffMaxDefault)
	def(&o.TriggerMinInterval, TriggerMinIntervalDefault)
	if o.MaxBackfillDays <= 0 {
		o.MaxBackfillDays = MaxBackfillDaysDefault
	}
	if o.WorkerID == "" {
		o.WorkerID = "worker-" + newID()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Syncer runs cycles. It is safe to call RunCycle from several goroutines (or replicas): users
// are claimed through leases in the database.
type Syncer struct {
	st   *store.Store
	up   Upstream
	log  *zap.Logger
	opts Options
	// clock is Options.Now as given: nil lets the SQL use the database's now().
	clock func() time.Time
	// hooks lets tests stop a sync at a chosen point (see hooks.go); nil in production.
	hooks *Hooks
	// chunkPages is how many task pages a chunk transaction applies; tests lower it.
	chunkPages int
}

// New builds a Syncer.
func New(st *store.Store, up Upstream, log *zap.Logger, opts Options) *Syncer {
	if log == nil {
		log = zap.NewNop()
	}
	return &Syncer{st: st, up: up, log: log, opts: opts.withDefaults(), clock: opts.Now, chunkPages: TaskChunkPagesDefault}
}

// at is the clock reading passed into SQL as @now: nil unless a test set Options.Now.
func (s *Syncer) at() *time.Time {
	if s.clock == nil {
		return nil
	}
	t := s.clock()
	return &t
}

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
	jobs, writers := s.startWriters(ctx, sum.RunID, workers, t)
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
	enrolled, err := s.st.Enrol(ctx, s.at(), o.UserID)
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
func (s *Syncer) startWriters(ctx context.Context, runID string, n int, t *tally) (chan<- *finishJob, *sync.WaitGroup) {
	jobs := make(chan *finishJob, s.opts.Concurrency)
	var writers sync.WaitGroup
	for range n {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for j := range jobs {
				oc, err := s.finish(ctx, runID, j)
				t.record(j.lease.UserID, oc, err)
			}
		}()
	}
	return jobs, &writers
}

// claimLoop is one reader: it claims the next due user, reads it and hands it to a writer, until
// no user is left, shutdown starts, or a claim fails. A single-user run claims once.
func (s *Syncer) claimLoop(ctx context.Context, log *zap.Logger, req store.ClaimRequest, single bool, jobs chan<- *finishJob, t *tally) {
	for ctx.Err() == nil {
		// The claim runs to completion even if shutdown starts meanwhile: a claim cut short can
		// commit in the database unseen by the worker, leaving a lease nobody releases until it
		// expires. A completed claim is released at once if cancelled.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
		lease, err := s.st.Claim(cctx, req)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				t.claimFailed(err)
			}
			return
		}
		if lease == nil {
			return
		}
		if job, oc, err := s.readLeased(ctx, log, req.RunID, lease); job != nil {
			jobs <- job
		} else {
			t.record(lease.UserID, oc, err)
		}
		if single {
			return
		}
	}
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

// finishJob is a user whose reads are done, waiting for its final transaction; its lease is
// renewed until that transaction ends.
type finishJob struct {
	lease     *store.Lease
	log       *zap.Logger
	started   time.Time
	plan      *store.Plan
	res       userResult
	stopRenew context.CancelFunc
	renewDone <-chan struct{}
}

// readLeased reads one claimed user, keeping its lease alive. On success it returns the job that
// finishes the user; otherwise it records the outcome itself (a failure, an abandoned or lost
// lease) and returns it.
func (s *Syncer) readLeased(ctx context.Context, runLog *zap.Logger, runID string, lease *store.Lease) (*finishJob, outcome, error) {
	log := runLog.With(zap.String("user_id", lease.UserID))
	ctx = logging.WithLogger(ctx, log)
	started := time.Now()

	userCtx, cancel := context.WithTimeoutCause(ctx, s.opts.UserTimeout, errUserTimeout)
	defer cancel()
	// Renewal outlives the reads (and shutdown): it stops when the user's final transaction
	// has ended, whichever goroutine runs it.
	lost, stopRenew, renewDone := s.keepLease(ctx, log, lease, cancel)
	plan, res, err := s.readUser(userCtx, log, runID, lease)
	timedOut := errors.Is(context.Cause(userCtx), errUserTimeout)
	select {
	case <-lost:
		err = store.ErrLeaseLost
	default:
	}
	if err == nil {
		return &finishJob{lease: lease, log: log, started: started, plan: plan, res: res, stopRenew: stopRenew, renewDone: renewDone}, 0, nil
	}
	stopRenew()
	<-renewDone

	// Shutdown: the reads were cut short; chunks already applied are kept (the next sync finds
	// them done), and the user is given back.
	if ctx.Err() != nil && !errors.Is(err, store.ErrLeaseLost) {
		if rerr := s.st.Release(context.WithoutCancel(ctx), lease); rerr != nil {
			log.Warn("sync.user.release_failed", zap.Error(rerr))
		}
		log.Warn("sync.user.abandoned", zap.String("reason", "shutdown"), zap.Duration("duration", time.Since(started)))
		return nil, outcomeAbandoned, err
	}
	if errors.Is(err, store.ErrLeaseLost) {
		return nil, s.leaseLost(ctx, log, lease, started), err
	}
	if timedOut && !errors.Is(err, errUserTimeout) {
		err = fmt.Errorf("%w: %w", errUserTimeout, err)
	}
	return nil, outcomeFailed, s.fail(ctx, log, runID, lease, err, time.Since(started))
}

// finish applies a read user's final transaction and records the outcome. The transaction's
// own fence decides whether the lease still held: a renewal that raced with its commit and
// found the lease released must not turn a committed sync into a lost one.
func (s *Syncer) finish(ctx context.Context, runID string, j *finishJob) (outcome, error) {
	err := s.applyUser(ctx, j.log, j.lease, j.plan, &j.res)
	j.stopRenew()
	<-j.renewDone
	if s.hooks != nil && s.hooks.AfterFinish != nil {
		defer s.hooks.AfterFinish(j.lease.UserID)
	}
	if errors.Is(err, store.ErrLeaseLost) {
		return s.leaseLost(ctx, j.log, j.lease, j.started), err
	}
	if err != nil {
		return outcomeFailed, s.fail(ctx, j.log, runID, j.lease, err, time.Since(j.started))
	}
	j.log.Info("sync.user.done", append(j.res.fields(), zap.Duration("duration", time.Since(j.started)))...)
	if j.res.applied.Status == "degraded" {
		return outcomeDegraded, nil
	}
	return outcomeSynced, nil
}

// keepLease renews the lease in the background until stop is called (renewal ignores ctx's
// cancellation); done is closed once it has stopped, lost if the lease was lost, and then
// cancel stops the sync.
func (s *Syncer) keepLease(ctx context.Context, log *zap.Logger, lease *store.Lease, cancel context.CancelFunc) (lost <-chan struct{}, stop context.CancelFunc, done <-chan struct{}) {
	renewCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	lostCh, doneCh := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(doneCh)
		s.renew(renewCtx, log, lease, lostCh, cancel)
	}()
	return lostCh, stop, doneCh
}

// leaseLost logs a sync that lost its lease and says what it was: stopped by usage-sync pause
// (the pause took the lease; nothing was written after it) or abandoned (another worker took
// the user over after the lease expired).
func (s *Syncer) leaseLost(ctx context.Context, log *zap.Logger, lease *store.Lease, started time.Time) outcome {
	if paused, err := s.st.IsPaused(context.WithoutCancel(ctx), lease.UserID); err == nil && paused {
		log.Info("sync.user.paused", zap.Duration("duration", time.Since(started)))
		return outcomePaused
	}
	log.Warn("sync.user.lease_lost", zap.Duration("duration", time.Since(started)))
	return outcomeAbandoned
}

// renew extends the lease every third of its TTL until ctx ends; a lost lease stops the sync.
func (s *Syncer) renew(ctx context.Context, log *zap.Logger, lease *store.Lease, lost chan<- struct{}, stop context.CancelFunc) {
	tick(ctx, s.opts.LeaseTTL/3, func() bool {
		err := s.st.Renew(ctx, lease, s.opts.LeaseTTL)
		if errors.Is(err, store.ErrLeaseLost) {
			close(lost)
			stop()
			return false
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("sync.lease.renew_failed", zap.Error(err))
		}
		if err == nil && s.hooks != nil && s.hooks.AfterRenew != nil {
			s.hooks.AfterRenew(lease.UserID)
		}
		return true
	})
}

// fail records a failed sync in sync_state with its backoff and logs it once.
func (s *Syncer) fail(ctx context.Context, log *zap.Logger, runID string, lease *store.Lease, err error, took time.Duration) error {
	kind, retryAfter := classify(err)
	// A Retry-After may lengthen the wait, never past FAILURE_BACKOFF_MAX: it is the server's
	// advice, and one reply must not park a user for a day (or, as an HTTP date, for centuries).
	backoff := min(max(s.backoff(lease.ConsecutiveFailures), retryAfter), s.opts.FailureBackoffMax)
	msg := errorText(err)
	fields := append([]zap.Field{zap.String("error", msg), zap.String("kind", kind),
		zap.Int("consecutive_failures", lease.ConsecutiveFailures+1)}, failureFields(err)...)
	// The log keeps the whole text; sync_state, which the user reads, gets userText.
	next, rerr := s.st.RecordFailure(context.WithoutCancel(ctx), lease, store.Failure{RunID: runID, Error: userText(err, kind, runID), Kind: kind, Backoff: backoff})
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

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
