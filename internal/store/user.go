package store

import (
	"context"
	"fmt"
	"time"
)

// UserState is what a sync reads of the user's stored data before it asks the upstream.
type UserState struct {
	// SettledKeyTotals sums each key's stored day rows before the first day this sync re-reads;
	// the guard adds the fresh windows to it and compares with the key's lifetime total.
	SettledKeyTotals map[string]int64
	// TaskWatermark is the smallest created_at among unfinished tasks and tasks finished within
	// the revision window, or the newest created_at when there are none; nil before any task.
	TaskWatermark *time.Time
}

// LoadUser reads the user's state for a sync that re-reads days from firstDay on.
func (s *Store) LoadUser(ctx context.Context, user string, firstDay time.Time, revisionWindow time.Duration) (UserState, error) {
	st := UserState{SettledKeyTotals: map[string]int64{}}
	rows, err := s.pool.Query(ctx, `
		select api_key_id, sum(count)::bigint from api_usage
		where origin = 'usage-sync' and user_id = $1 and api_key_id is not null and period_start < $2
		group by api_key_id`, user, firstDay.UTC())
	if err != nil {
		return st, fmt.Errorf("load settled usage of %s: %w", user, err)
	}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			rows.Close()
			return st, fmt.Errorf("load settled usage of %s: %w", user, err)
		}
		st.SettledKeyTotals[k] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("load settled usage of %s: %w", user, err)
	}
	err = s.pool.QueryRow(ctx, `
		select coalesce(
			(select min(created_at) from tasks
			 where user_id = $1 and (status in ('pending', 'processing') or finished_at > now() - $2::interval)),
			(select max(created_at) from tasks where user_id = $1))`,
		user, revisionWindow.String()).Scan(&st.TaskWatermark)
	if err != nil {
		return st, fmt.Errorf("load task watermark of %s: %w", user, err)
	}
	return st, nil
}
