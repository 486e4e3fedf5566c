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
	// EnrolledAt is nil for a profile no worker has enrolled yet.
	EnrolledAt     *time.Time
	SettledThrough *time.Time // the first day not settled; nil before any is
	Status         string     // sync_state.status; "" when not enrolled
}

// VerifyTargets lists the users in profiles (or only the one named), in id order. It only reads.
func (s *Store) VerifyTargets(ctx context.Context, only string) ([]VerifyTarget, error) {
	var user *string
	if only != "" {
		user = &only
	}
	rows, err := s.pool.Query(ctx, `
		select p.user_id::text, s.enrolled_at, s.settled_through::timestamp at time zone 'UTC', coalesce(s.status, '')
		from profiles p left join sync_state s on s.user_id = p.user_id
		where $1::uuid is null or p.user_id = $1::uuid
		order by p.user_id`, user)
	if err != nil {
		return nil, fmt.Errorf("list users to verify: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (VerifyTarget, error) {
		var v VerifyTarget
		err := r.Scan(&v.UserID, &v.EnrolledAt, &v.SettledThrough, &v.Status)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users to verify: %w", err)
	}
	return out, nil
}

// MirrorKey is one api_keys row as verify compares it with the upstream's lifetime listing.
type MirrorKey struct {
	ID            string
	TotalRequests *int64
	LastUsedAt    *time.Time
	Revoked       bool
}

// Mirror is what the database holds of one user for verify: its keys, and, over the settled
// days [From, To), its per-purpose day totals and what the ledger charged for API requests per
// purpose.
type Mirror struct {
	Keys []MirrorKey
	// Purposes sums the per-purpose day rows (api_key_id null) of the settled days.
	Purposes map[string]int64
	// Charged sums, per purpose, the amount of the key_requests rows (the purpose of their key)
	// and of the unlisted_requests rows (the purpose their subject names) whose day is settled;
	// the shadow: sources instead when shadow.
	Charged map[string]int64
}

// MirrorOf reads a user's mirror and ledger for verify in one read-only snapshot, so the three
// agree with each other. It writes nothing.
func (s *Store) MirrorOf(ctx context.Context, user string, from, to time.Time, shadow bool) (Mirror, error) {
	m := Mirror{Purposes: map[string]int64{}, Charged: map[string]int64{}}
	prefix := ""
	if shadow {
		prefix = ShadowPrefix
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return m, fmt.Errorf("read the mirror of %s: %w", user, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `
		select id, total_requests, last_used_at, revoked_at is not null from api_keys where user_id = $1 order by id`, user)
	if err != nil {
		return m, fmt.Errorf("read the api_keys of %s: %w", user, err)
	}
	if m.Keys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (MirrorKey, error) {
		var k MirrorKey
		err := r.Scan(&k.ID, &k.TotalRequests, &k.LastUsedAt, &k.Revoked)
		return k, err
	}); err != nil {
		return m, fmt.Errorf("read the api_keys of %s: %w", user, err)
	}
	if err := collectSums(ctx, tx, m.Purposes, `
		select coalesce(purpose, ''), sum(count)::bigint from api_usage
		where origin = 'usage-sync' and user_id = $1 and api_key_id is null and period_start >= $2 and period_start < $3
		group by 1`, user, from.UTC(), to.UTC()); err != nil {
		return m, fmt.Errorf("read the per-purpose usage of %s: %w", user, err)
	}
	// The day is the subject's last ten characters for both sources ("<key id>/<day>",
	// "<purpose>/<day>").
	if err := collectSums(ctx, tx, m.Charged, `
		select coalesce(case when l.source = $4 || 'key_requests' then k.purpose
		                     else substring(l.subject from '^(.*)/[0-9]{4}-[0-9]{2}-[0-9]{2}$') end, ''),
		       sum(l.amount)::bigint
		from credit_ledger l
		left join api_keys k on l.source = $4 || 'key_requests' and k.user_id = l.user_id and k.id = l.meta ->> 'key_id'
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
