package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// VerifyTarget is a user verify checks, with what it needs of its sync_state.
type VerifyTarget struct {
	UserID string
	// EnrolledAt is nil for a profile no worker has enrolled yet; LiveAt is the user's go-live
	// (usage_sync.go_live: the first take by a worker in live mode), nil before it.
	EnrolledAt, LiveAt *time.Time
	SettledThrough     *time.Time // the first day not settled; nil before any is
	// LiveSettledThrough is the first day a worker in live mode has not settled
	// (usage_sync.go_live.settled_through); nil before any is.
	LiveSettledThrough *time.Time
	Status             string // sync_state.status; "" when not enrolled
}

// VerifyTargets lists the users in profiles (or only the one named), in id order. It only reads.
func (s *Store) VerifyTargets(ctx context.Context, only string) ([]VerifyTarget, error) {
	var user *string
	if only != "" {
		user = &only
	}
	rows, err := s.pool.Query(ctx, `
		select p.user_id::text, s.enrolled_at, g.live_at, s.settled_through::timestamp at time zone 'UTC',
		       g.settled_through::timestamp at time zone 'UTC', coalesce(s.status, '')
		from profiles p left join sync_state s on s.user_id = p.user_id left join usage_sync.go_live g on g.user_id = p.user_id
		where $1::uuid is null or p.user_id = $1::uuid
		order by p.user_id`, user)
	if err != nil {
		return nil, fmt.Errorf("list users to verify: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (VerifyTarget, error) {
		var v VerifyTarget
		err := r.Scan(&v.UserID, &v.EnrolledAt, &v.LiveAt, &v.SettledThrough, &v.LiveSettledThrough, &v.Status)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users to verify: %w", err)
	}
	return out, nil
}

// RecordKey is one key of the worker's record (usage_sync.keys) as verify compares it with the
// upstream's lifetime listing, and whether its api_keys mirror row says something else.
type RecordKey struct {
	ID            string
	TotalRequests *int64
	LastUsedAt    *time.Time
	Revoked       bool
	// MirrorDiffers: the api_keys row is missing or differs from the record (the dashboard shows
	// something the worker never wrote; billing is unaffected).
	MirrorDiffers bool
	MirrorTotal   *int64 // the api_keys row's total_requests (nil: no row, or none)
}

// Stored is what the database holds of one user for verify: the worker's record of its keys,
// and, over the settled days [From, To), its per-purpose day totals in the record and in the
// mirror, the per-key mirror rows that differ from the record, and what the ledger charged for
// API requests per purpose.
type Stored struct {
	Keys []RecordKey
	// Purposes sums the record's per-purpose days (usage_sync.purpose_days) of the settled days;
	// MirrorPurposes the api_usage per-purpose rows (api_key_id null) of the same days.
	Purposes, MirrorPurposes map[string]int64
	// KeyDaysDiffering counts the record's per-key days whose api_usage row is missing or differs.
	KeyDaysDiffering int64
	// Charged sums, per purpose, the amount of the key_requests rows (the purpose their key had
	// that day in the record) and of the unlisted_requests rows (the purpose their subject names)
	// whose day is settled; the shadow: sources instead when shadow.
	Charged map[string]int64
}

// StoredOf reads a user's record, mirror and ledger for verify in one read-only snapshot, so
// they agree with each other. It writes nothing.
func (s *Store) StoredOf(ctx context.Context, user string, from, to time.Time, shadow bool) (Stored, error) {
	m := Stored{Purposes: map[string]int64{}, MirrorPurposes: map[string]int64{}, Charged: map[string]int64{}}
	prefix := ""
	if shadow {
		prefix = ShadowPrefix
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return m, fmt.Errorf("read the record of %s: %w", user, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `
		select k.key_id, k.total_requests, k.last_used_at, k.revoked_at is not null,
		       m.id is null or (m.user_id, m.name, m.purpose, m.is_active, m.last_used_at, m.total_requests, m.revoked_at)
		                       is distinct from
		                       (k.user_id, k.name, k.purpose, k.is_active, k.last_used_at, k.total_requests, k.revoked_at),
		       m.total_requests
		from usage_sync.keys k left join api_keys m on m.id = k.key_id
		where k.user_id = $1 order by k.key_id`, user)
	if err != nil {
		return m, fmt.Errorf("read the keys of %s: %w", user, err)
	}
	if m.Keys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (RecordKey, error) {
		var k RecordKey
		err := r.Scan(&k.ID, &k.TotalRequests, &k.LastUsedAt, &k.Revoked, &k.MirrorDiffers, &k.MirrorTotal)
		return k, err
	}); err != nil {
		return m, fmt.Errorf("read the keys of %s: %w", user, err)
	}
	if err := tx.QueryRow(ctx, `
		select count(*) from usage_sync.key_days d
		left join api_usage m on m.origin = 'usage-sync' and m.api_key_id = d.key_id and m.period_start = d.day
		where d.user_id = $1
		  and (m.api_key_id is null or (m.user_id, m.count, coalesce(m.purpose, '')) is distinct from (d.user_id, d.count, d.purpose))`,
		user).Scan(&m.KeyDaysDiffering); err != nil {
		return m, fmt.Errorf("compare the per-key usage of %s: %w", user, err)
	}
	if err := collectSums(ctx, tx, m.Purposes, `
		select purpose, sum(count)::bigint from usage_sync.purpose_days
		where user_id = $1 and day >= $2 and day < $3 group by 1`, user, from.UTC(), to.UTC()); err != nil {
		return m, fmt.Errorf("read the per-purpose usage of %s: %w", user, err)
	}
	if err := collectSums(ctx, tx, m.MirrorPurposes, `
		select coalesce(purpose, ''), sum(count)::bigint from api_usage
		where origin = 'usage-sync' and user_id = $1 and api_key_id is null and period_start >= $2 and period_start < $3
		group by 1`, user, from.UTC(), to.UTC()); err != nil {
		return m, fmt.Errorf("read the per-purpose mirror of %s: %w", user, err)
	}
	// The day is the subject's last ten characters for both sources ("<key id>/<day>",
	// "<purpose>/<day>").
	if err := collectSums(ctx, tx, m.Charged, `
		select coalesce(case when l.source = $4 || 'key_requests' then d.purpose
		                     else left(l.subject, length(l.subject) - 11) end, ''),
		       sum(l.amount)::bigint
		from credit_ledger l
		left join usage_sync.key_days d on l.source = $4 || 'key_requests' and d.user_id = l.user_id
		     and l.subject = d.key_id || '/' || to_char(d.day at time zone 'UTC', 'YYYY-MM-DD')
		where l.user_id = $1 and l.source in ($4 || 'key_requests', $4 || 'unlisted_requests')
		  and l.subject ~ '/[0-9]{4}-[0-9]{2}-[0-9]{2}$'
		  and right(l.subject, 10)::date >= ($2::timestamptz at time zone 'UTC')::date
		  and right(l.subject, 10)::date < ($3::timestamptz at time zone 'UTC')::date
		group by 1`, user, from.UTC(), to.UTC(), prefix); err != nil {
		return m, fmt.Errorf("read the ledger of %s: %w", user, err)
	}
	return m, tx.Commit(ctx)
}

func collectSums(ctx context.Context, tx pgx.Tx, into map[string]int64, sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		into[k] += n
	}
	return rows.Err()
}
