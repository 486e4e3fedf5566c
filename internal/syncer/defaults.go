package syncer

import "time"

// The defaults of Options, each in one place: internal/config reads them for its variables'
// defaults and its --help table.
const (
	// ConcurrencyDefault is how many users a cycle syncs at once (SYNC_CONCURRENCY).
	ConcurrencyDefault = 4
	// LeaseTTLDefault is the lease on a user being synced, renewed while it runs; a crashed
	// worker's users free up after it (SYNC_LEASE_TTL).
	LeaseTTLDefault = 2 * time.Minute
	// UserTimeoutDefault bounds one user's sync (SYNC_USER_TIMEOUT).
	UserTimeoutDefault = 10 * time.Minute
	// SettleLagDefault is how long after a UTC day's end a read makes the day final (SETTLE_LAG).
	SettleLagDefault = 2 * time.Hour
	// TaskOverlapDefault is the overlap of consecutive task listings (TASK_OVERLAP).
	TaskOverlapDefault = 10 * time.Minute
	// RevisionWindowDefault is how long finished tasks are re-read for revised counts
	// (REVISION_WINDOW).
	RevisionWindowDefault = 24 * time.Hour
	// RevisionIntervalDefault is how often, at most, a user's finished tasks are re-read for
	// revisions (REVISION_INTERVAL).
	RevisionIntervalDefault = time.Hour
	// FailureBackoffBaseDefault is the first wait before retrying a user whose sync failed; it
	// doubles per consecutive failure (FAILURE_BACKOFF_BASE).
	FailureBackoffBaseDefault = time.Minute
	// FailureBackoffMaxDefault caps that wait (FAILURE_BACKOFF_MAX).
	FailureBackoffMaxDefault = time.Hour
	// MaxBackfillDaysDefault is how many unsettled days a sync re-reads at most before today
	// (MAX_BACKFILL_DAYS).
	MaxBackfillDaysDefault = 7
	// RequestPollDefault is how often the daemon looks for users whose sync the dashboard asked
	// for through public.request_sync() (SYNC_REQUEST_POLL).
	RequestPollDefault = 5 * time.Second
	// TriggerMinIntervalDefault is the least time between two triggered syncs of one user,
	// webhooks and request_sync() together, across replicas (TRIGGER_MIN_INTERVAL).
	TriggerMinIntervalDefault = 30 * time.Second
)

// Fixed bounds of a cycle, not configurable: each is set here once.
const (
	// cycleJoinWindow is how long after a cycle starts a worker still joins it when every due
	// user is already claimed but some are still in flight: replicas on one schedule start
	// within seconds of each other, and a run starting later than this is a new pass, not a late
	// replica.
	cycleJoinWindow = time.Minute
	// claimTimeout bounds one claim statement, which runs to completion even during shutdown.
	claimTimeout = 30 * time.Second
	// applyTimeout bounds the write transaction, which runs to completion even during shutdown
	// so a user is never half-written.
	applyTimeout = 2 * time.Minute
	// progressLogEvery is how often, at most, a cycle logs sync.cycle.progress.
	progressLogEvery = 30 * time.Second
	// taskPageSize is the upstream's maximum page.
	taskPageSize = 100
	// taskProgressLogPages is how many task pages a pass reads between sync.tasks.progress logs.
	taskProgressLogPages = 50
	// requestBatchPerWorker is how many requested users one poll takes per unit of Concurrency.
	requestBatchPerWorker = 4
)
