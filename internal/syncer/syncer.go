// Package syncer runs sync cycles: it claims due users, reads their usage and tasks from the
// upstream, and hands each user's complete result to the store to apply atomically.
package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/clock"
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
	Observer           Observer // nil: nothing observes (see observe.go)

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
	return o
}

// Syncer runs cycles. It is safe to call RunCycle from several goroutines (or replicas): users
// are claimed through leases in the database.
type Syncer struct {
	st   *store.Store
	up   Upstream
	log  *zap.Logger
	opts Options
	// clock is what everything the sync decides is measured on, in Go and in SQL: the zero
	// Clock in production (the database's now() in SQL), a test's through SetClock.
	clock clock.Clock
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
	return &Syncer{st: st, up: up, log: log, opts: opts.withDefaults(), chunkPages: TaskChunkPagesDefault}
}

// newID is a random id for a run or a worker.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
