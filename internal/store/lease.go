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
}

// ClaimRequest says which users a worker may claim.
type ClaimRequest struct {
	Owner  string
	RunID  string    // recorded on the user, for the logs
	Since  time.Time // database time the run started: a user attempted since then is done
	TTL    time.Duration
	All    bool   // include users backing off after failures
	UserID string // only this user, ignoring its backoff
}

// Now is the database's clock, which every lease and attempt time is measured on.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.pool.QueryRow(ctx, `select now()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("read database clock: %w", err)
	}
	return t, nil
}

// HasUser reports whether user is in profiles.
func (s *Store) HasUser(ctx context.Context, user string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `select exists (select 1 from profiles where user_id = $1)`, user).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up user %s: %w", user, err)
	}
	return ok, nil
}

// Enrol adds every profile that has no sync_state yet, as pending and due now.
func (s *Store) Enrol(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		insert into sync_state (user_id)
		select p.user_id from profiles p
		where not exists (select 1 from sync_state s where s.user_id = p.user_id)
		on conflict (user_id) do nothing`)
	if err != nil {
		return 0, fmt.Errorf("enrol users: %w", err)
	}
	return tag.RowsAffected(), nil
}

// dueFilter: still in profiles (a deleted user keeps its sync_state but is synced no more), not
// attempted since the run started (so a user finished by any worker during this
// run is not taken again), not leased by another live worker, and due.
const dueFilter = `
	exists (select 1 from profiles p where p.user_id = s.user_id)
	and (s.last_attempt_at is null or s.last_attempt_at < @since)
	and (s.lease_expires_at is null or s.lease_expires_at < now())
	and (case when @user::uuid is not null then s.user_id = @user::uuid
	          when @all then true
	          else s.next_attempt_at <= now() end)`

// Claim leases the next due user to owner, or returns nil when none is left for this run.
// SKIP LOCKED lets several workers and replicas claim side by side without waiting on each other.
func (s *Store) Claim(ctx context.Context, r ClaimRequest) (*Lease, error) {
	var (
		l       Lease
		blocked []byte
	)
	args := claimArgs(r)
	err := s.pool.QueryRow(ctx, `
		update sync_state s
		set lease_owner = @owner, lease_expires_at = now() + @ttl::interval,
		    lease_token = s.lease_token + 1, last_run_id = @run, updated_at = now()
		where s.user_id = (
			select s.user_id from sync_state s
			where `+dueFilter+`
			order by s.next_attempt_at, s.user_id
			limit 1
			for update skip locked)
		returning s.user_id::text, s.lease_owner, s.lease_token, s.enrolled_at, s.settled_through::timestamp at time zone 'UTC',
		          s.consecutive_failures, s.blocked_keys`, args).
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

// LeasedElsewhere counts users this run would have synced but another live worker holds.
func (s *Store) LeasedElsewhere(ctx context.Context, r ClaimRequest) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
		select count(*) from sync_state s
		where (s.last_attempt_at is null or s.last_attempt_at < @since)
		  and s.lease_expires_at >= now() and s.lease_owner <> @owner
		  and (case when @user::uuid is not null then s.user_id = @user::uuid
		            when @all then true
		            else s.next_attempt_at <= now() end)`, claimArgs(r)).Scan(&n)
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
	return pgx.NamedArgs{"owner": r.Owner, "run": r.RunID, "since": r.Since, "ttl": r.TTL.String(), "all": r.All, "user": user}
}

// Renew extends the lease while the user is being synced.
func (s *Store) Renew(ctx context.Context, l *Lease, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `
		update sync_state set lease_expires_at = now() + $3::interval
		where user_id = $1 and lease_token = $2 and lease_owner is not null`, l.UserID, l.Token, ttl.String())
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", l.UserID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Release gives the user back without recording an outcome: the sync was abandoned (shutdown),
// so the user is due again at once and keeps its failure count.
func (s *Store) Release(ctx context.Context, l *Lease) error {
	_, err := s.pool.Exec(ctx, `
		update sync_state set lease_owner = null, lease_expires_at = null, updated_at = now()
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
		update sync_state set status = 'error', last_attempt_at = now(), last_error = $3, last_error_kind = $4,
		       consecutive_failures = consecutive_failures + 1, next_attempt_at = now() + $5::interval,
		       last_run_id = $6, lease_owner = null, lease_expires_at = null, updated_at = now()
		where user_id = $1 and lease_token = $2
		returning next_attempt_at`, l.UserID, l.Token, f.Error, f.Kind, f.Backoff.String(), f.RunID).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, ErrLeaseLost
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("record failure of %s: %w", l.UserID, err)
	}
	return next, nil
}
