package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// UserState is what a sync reads of the user's stored data before it asks the upstream.
type UserState struct {
	// SettledKeyTotals sums each key's day rows in the worker's record (usage_sync.key_days, never
	// the mirror) before the first day this sync re-reads;
	// the guard adds the fresh windows to it and compares with the key's lifetime total.
	SettledKeyTotals map[string]int64
	// ReadsFingerprint digests the lifetime listing of the last successful sync when that sync's
	// listings before and after its windows agreed; "" otherwise.
	ReadsFingerprint string
	// TaskWatermark is where a revision sweep starts listing tasks (unfinished tasks and tasks
	// finished within the revision window); TaskWatermarkOpen is where a pass between sweeps
	// starts (unfinished tasks only). Both nil until a pass over a user with tasks completed.
	TaskWatermark, TaskWatermarkOpen *time.Time
	// SweepDue says finished tasks are due to be re-read for revisions: never swept yet, or last
	// swept at least the revision interval ago on the lease's clock.
	SweepDue bool
}

// LoadUser reads the state of the leased user for a sync that re-reads days from firstDay on.
// revisionInterval is how often finished tasks are re-read; a negative one makes every sync a
// sweep.
func (s *Store) LoadUser(ctx context.Context, l *Lease, firstDay time.Time, revisionInterval time.Duration) (UserState, error) {
	user := l.UserID
	st := UserState{SettledKeyTotals: map[string]int64{}}
	// One round trip: this runs on every sync, beside the user's first upstream request.
	var (
		fp     *string
		totals []byte
		every  *string // nil: sweep every sync
	)
	if revisionInterval >= 0 {
		v := revisionInterval.String()
		every = &v
	}
	err := s.pool.QueryRow(ctx, `
		select s.reads_fingerprint, s.task_watermark, s.task_watermark_open,
		       @every::interval is null or s.revision_swept_at is null
		           or s.revision_swept_at + @every::interval <= `+clockNow+`,
		       (select coalesce(jsonb_object_agg(k, n), '{}'::jsonb) from (
		          select key_id as k, sum(count)::bigint as n from usage_sync.key_days
		          where user_id = @user and day < @first
		          group by key_id) settled)
		from sync_state s where s.user_id = @user`,
		pgx.NamedArgs{"user": user, "first": firstDay.UTC(), "every": every, "now": l.clock.NowOrNil()}).
		Scan(&fp, &st.TaskWatermark, &st.TaskWatermarkOpen, &st.SweepDue, &totals)
	if err != nil {
		return st, fmt.Errorf("load sync state of %s: %w", user, err)
	}
	if err := json.Unmarshal(totals, &st.SettledKeyTotals); err != nil {
		return st, fmt.Errorf("load settled usage of %s: %w", user, err)
	}
	if fp != nil {
		st.ReadsFingerprint = *fp
	}
	return st, nil
}
