package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReportRow is one user's usage and charges for one UTC day of usage.
type ReportRow struct {
	Day             time.Time
	KeyRequests     int64 // Σ of the per-key day rows
	PurposeRequests int64 // Σ of the per-purpose day totals
	// Unlisted is what was charged as unlisted_requests for the day: requests the per-purpose
	// totals count that no key listing showed (keys revoked before the worker saw them).
	Unlisted      int64
	TaskEmails    int64 // billable emails of finished tasks created that day
	Charged       int64 // Σ amount of the real ledger rows for that day's usage
	Debited       int64
	Shortfall     int64 // Charged − Debited: usage the balance did not cover
	ShadowCharged int64 // Σ amount of shadow rows (what would have been charged)
}

// Report returns a user's usage and charges per UTC day in [from, to), oldest first, from the
// worker's own record (usage_sync) and the ledger, never the dashboard's mirror. Ledger rows
// are attributed to the day the usage happened (meta.day), not the day they were written.
func (s *Store) Report(ctx context.Context, user string, from, to time.Time) ([]ReportRow, error) {
	rows, err := s.pool.Query(ctx, `
		with days as (
			select (d at time zone 'UTC')::date as day from generate_series($2::timestamptz, $3::timestamptz - interval '1 day', interval '1 day') as d
		),
		usage as (
			select coalesce(k.day, p.day) as day, k.n as keys, p.n as purposes
			from (select (day at time zone 'UTC')::date as day, sum(count) as n from usage_sync.key_days
			      where user_id = $1 and day >= $2 and day < $3 group by 1) k
			full join (select (day at time zone 'UTC')::date as day, sum(count) as n from usage_sync.purpose_days
			           where user_id = $1 and day >= $2 and day < $3 group by 1) p on p.day = k.day
		),
		tasks as (
			select (created_at at time zone 'UTC')::date as day, sum(billable_count) as emails
			from usage_sync.tasks where user_id = $1 and finished_at is not null and created_at >= $2 and created_at < $3
			group by 1
		),
		ledger as (
			select (meta ->> 'day')::date as day,
			       sum(amount) filter (where source = 'unlisted_requests') as unlisted,
			       sum(amount) filter (where source not like 'shadow:%') as charged,
			       sum(debited) filter (where source not like 'shadow:%') as debited,
			       sum(amount) filter (where source like 'shadow:%') as shadow
			from credit_ledger where user_id = $1 and meta ? 'day'
			group by 1
		)
		select days.day::timestamp at time zone 'UTC', coalesce(u.keys, 0)::bigint, coalesce(u.purposes, 0)::bigint,
		       coalesce(t.emails, 0)::bigint, coalesce(l.charged, 0)::bigint, coalesce(l.debited, 0)::bigint,
		       coalesce(l.shadow, 0)::bigint, coalesce(l.unlisted, 0)::bigint
		from days
		left join usage u on u.day = days.day
		left join tasks t on t.day = days.day
		left join ledger l on l.day = days.day
		order by days.day`, user, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("report for %s: %w", user, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReportRow, error) {
		var x ReportRow
		err := r.Scan(&x.Day, &x.KeyRequests, &x.PurposeRequests, &x.TaskEmails, &x.Charged, &x.Debited, &x.ShadowCharged, &x.Unlisted)
		x.Day = x.Day.UTC()
		x.Shortfall = x.Charged - x.Debited
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("report for %s: %w", user, err)
	}
	return out, nil
}

// Balance is a user's credits_remaining (0 when the user has no user_credits row).
func (s *Store) Balance(ctx context.Context, user string) (int64, error) {
	var b int64
	err := s.pool.QueryRow(ctx, `select coalesce((select credits_remaining from user_credits where user_id = $1), 0)`, user).Scan(&b)
	if err != nil {
		return 0, fmt.Errorf("balance of %s: %w", user, err)
	}
	return b, nil
}
