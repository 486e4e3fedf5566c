package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Ready checks that the database answers and holds the schema this binary needs; the error says
// which of the two is wrong (errors.Is(err, ErrSchemaOutdated) for the schema).
func (s *Store) Ready(ctx context.Context) error {
	return s.CheckSchema(ctx)
}

// OldestSuccessAge is, on the database's clock, how long ago the least recently synced user of
// profiles last synced successfully (a user that never did counts from its enrolment). ok is
// false when no user is enrolled (or every one is paused). A paused user is left out: an
// operator stopped its sync on purpose (usage-sync pause), and usage_sync_users_paused counts it
// instead. It reads the first entries of sync_state_success_age_idx, so a scrape costs the same
// whatever the number of users.
func (s *Store) OldestSuccessAge(ctx context.Context) (seconds float64, ok bool, err error) {
	err = s.pool.QueryRow(ctx, `
		select extract(epoch from now() - coalesce(s.last_success_at, s.enrolled_at))::float8
		from sync_state s
		where exists (select 1 from profiles p where p.user_id = s.user_id) and s.status <> 'paused'
		order by coalesce(s.last_success_at, s.enrolled_at)
		limit 1`).Scan(&seconds)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read oldest successful sync: %w", err)
	}
	return seconds, true, nil
}

// UsersEnrolled is how many users of profiles the worker has enrolled (a sync_state row) and
// syncs: paused users are left out, as from the age.
func (s *Store) UsersEnrolled(ctx context.Context) (float64, bool, error) {
	return s.countUsers(ctx, "users enrolled", `s.status <> 'paused'`)
}

// UsersInError is how many users of profiles are in error now (their last sync failed).
func (s *Store) UsersInError(ctx context.Context) (float64, bool, error) {
	return s.countUsers(ctx, "users in error", `s.status = 'error'`)
}

// countUsers counts the enrolled users of profiles whose sync_state matches where (a constant
// of this file, never input).
func (s *Store) countUsers(ctx context.Context, what, where string) (float64, bool, error) {
	var n float64
	err := s.pool.QueryRow(ctx, `
		select count(*)::float8 from sync_state s
		where `+where+` and exists (select 1 from profiles p where p.user_id = s.user_id)`).Scan(&n)
	if err != nil {
		return 0, false, fmt.Errorf("count %s: %w", what, err)
	}
	return n, true, nil
}
