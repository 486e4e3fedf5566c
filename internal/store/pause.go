package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// Paused is a user's pause as sync_state records it.
type Paused struct {
	UserID string
	At     time.Time
	By     string
	Reason string
	// Already says the user was paused before this call, which changed nothing: At, By and
	// Reason are that earlier pause's.
	Already bool
	// Interrupted names the worker whose sync of the user the pause fenced out (its lease was
	// live); "" when no sync was in flight.
	Interrupted string
}

// Pause marks the user paused: from its commit no claim takes the user (dueFilter), no
// request poll lists it, request_sync() refuses it, and a sync in flight writes nothing more.
//
// The in-flight case: the pause locks the user's sync_state row FOR UPDATE, which waits for
// any of the worker's fenced transactions (a task chunk or the final transaction: they hold the
// row FOR KEY SHARE) to end, and then bumps lease_token. A transaction that began before the
// pause commits before the pause does, with its charges; every later one fails its fence
// (ErrLeaseLost), as do the worker's renewal and failure record, so nothing is charged after
// the pause returns. The worker may still make upstream reads for the user until its next
// renewal or write finds the lease gone (at most a third of SYNC_LEASE_TTL); they are read,
// not written.
//
// A profile the worker has not enrolled yet is enrolled here, paused. The pause, the enrolment
// and "is a sync in flight" are measured on clk.
func (s *Store) Pause(ctx context.Context, clk clock.Clock, user, reason, by string) (Paused, error) {
	p := Paused{UserID: user}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		args := pgx.NamedArgs{"user": user, "reason": reason, "by": by, "now": clk.NowOrNil()}
		if _, err := tx.Exec(ctx, `
			insert into sync_state (user_id, enrolled_at, next_attempt_at) values (@user, `+clockNow+`, `+clockNow+`)
			on conflict (user_id) do nothing`, args); err != nil {
			return err
		}
		var status string
		var owner *string
		var at *time.Time
		var pausedBy, why *string
		if err := tx.QueryRow(ctx, `
			select status, case when lease_expires_at >= `+clockNow+` then lease_owner end, paused_at, paused_by, pause_reason
			from sync_state where user_id = @user for update`, args).Scan(&status, &owner, &at, &pausedBy, &why); err != nil {
			return err
		}
		if status == "paused" {
			p.Already, p.At, p.By, p.Reason = true, *at, *pausedBy, *why
			return nil
		}
		if owner != nil {
			p.Interrupted = *owner
		}
		p.By, p.Reason = by, reason
		return tx.QueryRow(ctx, `
			update sync_state set status_before_pause = status, status = 'paused', paused_at = `+clockNow+`,
			       paused_by = @by, pause_reason = @reason,
			       lease_token = lease_token + 1, lease_owner = null, lease_expires_at = null, updated_at = now()
			where user_id = @user
			returning paused_at`, args).Scan(&p.At)
	})
	if err != nil {
		return Paused{}, fmt.Errorf("pause user %s: %w", user, err)
	}
	return p, nil
}

// ErrNotPaused means Resume found the user not paused: it changed nothing.
var ErrNotPaused = errors.New("user is not paused")

// Resumed is what Resume changed.
type Resumed struct {
	Paused        Paused // the pause it ended
	Status        string // the status the user is back to (the one it had when paused)
	LastSuccessAt *time.Time
}

// Resume ends the user's pause: it gets back the status it had, and is due at once on clk, so
// the next cycle (or a --once) syncs it and catches up everything since, as after an outage.
// Nothing is lost: the pause moved no watermark and settled no day. Nothing is charged twice:
// the ledger's keys are what they always are.
func (s *Store) Resume(ctx context.Context, clk clock.Clock, user string) (Resumed, error) {
	var r Resumed
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		args := pgx.NamedArgs{"user": user, "now": clk.NowOrNil()}
		err := tx.QueryRow(ctx, `
			select paused_at, paused_by, pause_reason from sync_state
			where user_id = @user and status = 'paused' for update`, args).
			Scan(&r.Paused.At, &r.Paused.By, &r.Paused.Reason)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotPaused
		}
		if err != nil {
			return err
		}
		r.Paused.UserID = user
		return tx.QueryRow(ctx, `
			update sync_state set status = coalesce(status_before_pause, 'pending'), status_before_pause = null,
			       paused_at = null, paused_by = null, pause_reason = null,
			       next_attempt_at = `+clockNow+`, updated_at = now()
			where user_id = @user
			returning status, last_success_at`, args).Scan(&r.Status, &r.LastSuccessAt)
	})
	if errors.Is(err, ErrNotPaused) {
		return Resumed{}, err
	}
	if err != nil {
		return Resumed{}, fmt.Errorf("resume user %s: %w", user, err)
	}
	return r, nil
}

// IsPaused reports whether the user is paused.
func (s *Store) IsPaused(ctx context.Context, user string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `select exists (select 1 from sync_state where user_id = $1 and status = 'paused')`, user).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up whether %s is paused: %w", user, err)
	}
	return ok, nil
}

// PausedUsers counts the paused users still in profiles (the gauge usage_sync_users_paused);
// sync_state_paused_idx holds only them.
func (s *Store) PausedUsers(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `
		select count(*) from sync_state s
		where s.status = 'paused' and exists (select 1 from profiles p where p.user_id = s.user_id)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count paused users: %w", err)
	}
	return n, nil
}
