package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrLeaseLost means another worker claimed the user since this one did (its lease expired):
// whatever this worker fetched must not be written.
var ErrLeaseLost = errors.New("lease lost: another worker claimed this user")

// Lease is a worker's claim on one user for one sync, with what the sync needs to know of the
// user's state at claim time.
type Lease struct {
	UserID              string
	Owner               string
	Token               int64 // fencing token: every write checks it is still the user's
	EnrolledAt          time.Time
	SettledThrough      *time.Time // every UTC day before this is settled; nil before the first
	ConsecutiveFailures int
	BlockedKeys         map[string]string
	// clock is what the lease, the attempt and the backoff are measured on (ClaimRequest.Clock).
	clock func() time.Time
}

// at is the lease's clock reading to pass into SQL as @now.
func (l *Lease) at() *time.Time { return reading(l.clock) }

// reading is what a clock says, to pass into SQL as @now; no clock gives nil, and the database
// uses its own now().
func reading(clock func() time.Time) *time.Time {
	if clock == nil {
		return nil
	}
	t := clock()
	return &t
}

// clockNow is "now" in every statement that decides time: the caller's clock when it passes one
// (tests run on a fake clock, river-style), else the database's, which every replica shares.
const clockNow = `coalesce(@now::timestamptz, now())`

// ClaimRequest says which users a worker may claim.
type ClaimRequest struct {
	Owner string
	RunID string // recorded on the user, for the logs
	// Cycle is the shared cycle the run takes users for (JoinCycle): a user already taken in it
	// is not taken again, by this worker or any other. 0 takes users whatever cycle took them
	// and leaves their cycle as it was (a --user run, which claims its one user once).
	Cycle  int64
	TTL    time.Duration
	All    bool   // include users backing off after failures
	UserID string // only this user, ignoring its backoff
	// Clock is the time leases, attempts and backoff are measured on; nil: the database's now().
	Clock func() time.Time
}

// HasUser reports whether user is in profiles.
func (s *Store) HasUser(ctx context.Context, user string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `select exists (select 1 from profiles where user_id = $1)`, user).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up user %s: %w", user, err)
	}
	return ok, nil
}

// Enrol adds every profile that has no sync_state yet, as pending and due now; now (nil: the
// database's clock) is also the enrolment, the user's default CHARGE_FROM. With only set (a run
// for one user: --user, a webhook, a request) it enrols at most that user: a single-user run
// never touches the rest of the population.
func (s *Store) Enrol(ctx context.Context, now *time.Time, only string) (int64, error) {
	var user *string
	if only != "" {
		user = &only
	}
	tag, err := s.pool.Exec(ctx, `
		insert into sync_state (user_id, enrolled_at, next_attempt_at)
		select p.user_id, `+clockNow+`, `+clockNow+` from profiles p
		where (@user::uuid is null or p.user_id = @user::uuid)
		  and not exists (select 1 from sync_state s where s.user_id = p.user_id)
		on conflict (user_id) do nothing`, pgx.NamedArgs{"now": now, "user": user})
	if err != nil {
		return 0, fmt.Errorf("enrol users: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Cycle is one pass over the due users, shared by every worker that starts while it is open.
type Cycle struct {
	ID        int64
	StartedAt time.Time
	Joined    bool // another worker started it; this one joined
}

// JoinCycle returns the current cycle while it is open, so that a worker starting beside others
// (replicas on one schedule, a CronJob --once beside the daemon) takes only the users nobody took
// yet; otherwise it starts the next cycle, so consecutive runs each sync everyone due. A cycle is
// open while a plain run could still claim a user in it, and, for joinWindow after it started,
// while users it took are still in flight: a replica starting a little late, when the others have
// claimed everyone, joins rather than syncing everyone again. After the window, users in flight
// no longer hold the cycle: a sync that outlasts the schedule must not leave the other replicas
// idle at the next tick. The cycle row is locked while deciding, so two workers starting
// together agree on one cycle.
func (s *Store) JoinCycle(ctx context.Context, runID string, now *time.Time, joinWindow time.Duration) (Cycle, error) {
	var c Cycle
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var started *time.Time
		if err := tx.QueryRow(ctx, `select id, started_at from usage_sync.cycle where singleton for update`).
			Scan(&c.ID, &started); err != nil {
			return err
		}
		if started != nil {
			open := pgx.NamedArgs{"now": now, "cycle": c.ID, "user": nil, "all": false, "started": started, "window": joinWindow.String()}
			if err := tx.QueryRow(ctx, `
				select exists (select 1 from sync_state s where `+dueFilter+`)
				    or (@started::timestamptz > `+clockNow+` - @window::interval
				        and exists (select 1 from sync_state s
				                    where s.cycle_id = @cycle and s.lease_owner is not null
				                      and s.lease_expires_at >= `+clockNow+`))`, open).Scan(&c.Joined); err != nil {
				return err
			}
		}
		if c.Joined {
			c.StartedAt = *started
			return nil
		}
		return tx.QueryRow(ctx, `
			update usage_sync.cycle set id = id + 1, started_at = `+clockNow+`, started_by = @run
			where singleton returning id, started_at`, pgx.NamedArgs{"now": now, "run": runID}).Scan(&c.ID, &c.StartedAt)
	})
	if err != nil {
		return Cycle{}, fmt.Errorf("join or start a cycle: %w", err)
	}
	return c, nil
}

// duePredicate: the users a run selects, before leases and cycles: one user whatever its
// backoff, or everyone (--all), or the users whose backoff is over.
const duePredicate = `(case when @user::uuid is not null then s.user_id = @user::uuid
	          when @all then true
	          else s.next_attempt_at <= ` + clockNow + ` end)`

// dueFilter: still in profiles (a deleted user keeps its sync_state but is synced no more), not
// taken in this cycle by any worker unless that worker's lease ran out before it recorded an
// outcome (it crashed or stalled), not leased by another live worker, and due. A run whose
// cycle has been succeeded claims nothing more: the new cycle's runs take the users left, and
// would otherwise find them marked with the old cycle and sync them again.
const dueFilter = `
	exists (select 1 from profiles p where p.user_id = s.user_id)
	and (@cycle::bigint = 0 or (@cycle = (select c.id from usage_sync.cycle c where c.singleton)
	     and (s.cycle_id is distinct from @cycle or s.lease_owner is not null)))
	and (s.lease_expires_at is null or s.lease_expires_at < ` + clockNow + `)
	and ` + duePredicate

// Claim leases the next due user to owner, or returns nil when none is left for this run.
// SKIP LOCKED lets several workers and replicas claim side by side without waiting on each other.
func (s *Store) Claim(ctx context.Context, r ClaimRequest) (*Lease, error) {
	l := Lease{clock: r.Clock}
	var blocked []byte
	err := s.pool.QueryRow(ctx, `
		update sync_state s
		set lease_owner = @owner, lease_expires_at = `+clockNow+` + @ttl::interval,
		    lease_token = s.lease_token + 1, last_run_id = @run, updated_at = now(),
		    cycle_id = case when @cycle::bigint = 0 then s.cycle_id else @cycle end
		where s.user_id = (
			select s.user_id from sync_state s
			where `+dueFilter+`
			order by s.next_attempt_at, s.user_id
			limit 1
			for update skip locked)
		returning s.user_id::text, s.lease_owner, s.lease_token, s.enrolled_at, s.settled_through::timestamp at time zone 'UTC',
		          s.consecutive_failures, s.blocked_keys`, claimArgs(r)).
		Scan(&l.UserID, &l.Owner, &l.Token, &l.EnrolledAt, &l.SettledThrough, &l.ConsecutiveFailures, &blocked)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim a user: %w", err)
	}
	if err := json.Unmarshal(blocked, &l.BlockedKeys); err != nil {
		return nil, fmt.Errorf("claim a user: blocked_keys of %s: %w", l.UserID, err)
	}
	if l.SettledThrough != nil {
		t := l.SettledThrough.UTC()
		l.SettledThrough = &t
	}
	return &l, nil
}

// LeasedElsewhere counts the users this run selects that another live worker holds: skipped,
// not failed.
func (s *Store) LeasedElsewhere(ctx context.Context, r ClaimRequest) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
		select count(*) from sync_state s
		where exists (select 1 from profiles p where p.user_id = s.user_id)
		  and s.lease_expires_at >= `+clockNow+` and s.lease_owner <> @owner
		  and `+duePredicate, claimArgs(r)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count users leased elsewhere: %w", err)
	}
	return n, nil
}

func claimArgs(r ClaimRequest) pgx.NamedArgs {
	var user *string
	if r.UserID != "" {
		user = &r.UserID
	}
	return pgx.NamedArgs{"owner": r.Owner, "run": r.RunID, "cycle": r.Cycle, "ttl": r.TTL.String(), "all": r.All,
		"user": user, "now": reading(r.Clock)}
}

// Renew extends the lease while the user is being synced.
func (s *Store) Renew(ctx context.Context, l *Lease, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `
		update sync_state set lease_expires_at = `+clockNow+` + @ttl::interval
		where user_id = @user and lease_token = @token and lease_owner is not null`,
		pgx.NamedArgs{"user": l.UserID, "token": l.Token, "ttl": ttl.String(), "now": l.at()})
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", l.UserID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Release gives the user back without recording an outcome: the sync was abandoned (shutdown),
// so the user is due again at once, in this cycle too, and keeps its failure count.
func (s *Store) Release(ctx context.Context, l *Lease) error {
	_, err := s.pool.Exec(ctx, `
		update sync_state set lease_owner = null, lease_expires_at = null, cycle_id = null, updated_at = now()
		where user_id = $1 and lease_token = $2`, l.UserID, l.Token)
	if err != nil {
		return fmt.Errorf("release lease on %s: %w", l.UserID, err)
	}
	return nil
}

// Failure is a failed sync as sync_state shows it.
type Failure struct {
	RunID   string
	Error   string
	Kind    string
	Backoff time.Duration // until the user is due again
}

// RecordFailure marks the user's sync as failed and schedules its next attempt.
func (s *Store) RecordFailure(ctx context.Context, l *Lease, f Failure) (next time.Time, err error) {
	err = s.pool.QueryRow(ctx, `
		update sync_state set status = 'error', last_attempt_at = `+clockNow+`, last_error = @error,
		       last_error_kind = @kind, consecutive_failures = consecutive_failures + 1,
		       next_attempt_at = `+clockNow+` + @backoff::interval,
		       last_run_id = @run, lease_owner = null, lease_expires_at = null, updated_at = now()
		where user_id = @user and lease_token = @token
		returning next_attempt_at`,
		pgx.NamedArgs{"user": l.UserID, "token": l.Token, "error": f.Error, "kind": f.Kind,
			"backoff": f.Backoff.String(), "run": f.RunID, "now": l.at()}).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, ErrLeaseLost
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("record failure of %s: %w", l.UserID, err)
	}
	return next, nil
}
