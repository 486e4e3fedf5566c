package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// Requested returns up to limit users whose sync was asked for through public.request_sync()
// and has not been attempted since, oldest request first. A user leased by a live worker is left
// out (that worker's sync may serve the request; if it does not, the next poll finds the user
// again), as is a user no longer in profiles or paused, and one that a trigger (a webhook, an
// earlier request) took less than minInterval ago (TRIGGER_MIN_INTERVAL): its request waits, and
// a poll after the interval serves it. Leases and the interval run on clk.
func (s *Store) Requested(ctx context.Context, clk clock.Clock, limit int, minInterval time.Duration) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		select s.user_id::text from sync_state s
		where s.requested_at is not null
		  and (s.last_attempt_at is null or s.last_attempt_at < s.requested_at)
		  and (s.lease_expires_at is null or s.lease_expires_at < `+clockNow+`)
		  and s.status <> 'paused'
		  and (s.last_triggered_at is null or s.last_triggered_at <= `+clockNow+` - @interval::interval)
		  and exists (select 1 from profiles p where p.user_id = s.user_id)
		order by s.requested_at, s.user_id
		limit @limit`, pgx.NamedArgs{"limit": limit, "interval": minInterval.String(), "now": clk.NowOrNil()})
	if err != nil {
		return nil, fmt.Errorf("list requested users: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("list requested users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list requested users: %w", err)
	}
	return out, nil
}
