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
)
