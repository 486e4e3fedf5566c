package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// TriggerVerdict is what TakeTrigger decided about one triggered sync.
type TriggerVerdict int

const (
	// TriggerTaken: the trigger may sync the user; last_triggered_at is now.
	TriggerTaken TriggerVerdict = iota + 1
	// TriggerTooSoon: a trigger took the user less than the minimum interval ago.
	TriggerTooSoon
	// TriggerBackingOff: the user's failure backoff is not over and the trigger respects it.
	TriggerBackingOff
	// TriggerNoUser: the user has no sync_state (not enrolled, or not in profiles).
	TriggerNoUser
)

func (v TriggerVerdict) String() string {
	switch v {
	case TriggerTaken:
		return "taken"
	case TriggerTooSoon:
		return "too_soon"
	case TriggerBackingOff:
		return "backing_off"
	case TriggerNoUser:
		return "no_user"
	}
	return "unknown"
}

// TriggerRequest is one trigger's claim on a user's next sync.
type TriggerRequest struct {
	UserID      string
	MinInterval time.Duration // TRIGGER_MIN_INTERVAL: since the user's last triggered sync
	// RespectBackoff refuses a user whose failure backoff is not over (a webhook); false lets
	// the trigger skip it (request_sync(), the dashboard's retry button).
	RespectBackoff bool
	Clock          clock.Clock
}

// TakeTrigger decides, in one statement, whether a trigger (a webhook, a request_sync()) may
// sync the user now, and if so records it in sync_state.last_triggered_at. The row lives in the
// database, not in a worker, so the interval holds across replicas: of two triggers racing on
// two replicas, the row lock lets exactly one through.
func (s *Store) TakeTrigger(ctx context.Context, r TriggerRequest) (TriggerVerdict, error) {
	var taken, tooSoon, backingOff bool
	err := s.pool.QueryRow(ctx, `
		with cur as (
			select s.user_id,
			       s.last_triggered_at is not null and s.last_triggered_at > `+clockNow+` - @interval::interval as too_soon,
			       @backoff and s.next_attempt_at > `+clockNow+` as backing_off
			from sync_state s where s.user_id = @user::uuid
			for update),
		upd as (
			update sync_state s set last_triggered_at = `+clockNow+`
			from cur where s.user_id = cur.user_id and not cur.too_soon and not cur.backing_off
			returning s.user_id)
		select exists (select 1 from upd), cur.too_soon, cur.backing_off from cur`,
		pgx.NamedArgs{"user": r.UserID, "interval": r.MinInterval.String(), "backoff": r.RespectBackoff, "now": r.Clock.NowOrNil()}).
		Scan(&taken, &tooSoon, &backingOff)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return TriggerNoUser, nil
	case err != nil:
		return 0, fmt.Errorf("take a trigger for %s: %w", r.UserID, err)
	case taken:
		return TriggerTaken, nil
	case tooSoon:
		return TriggerTooSoon, nil
	default:
		return TriggerBackingOff, nil
	}
}
