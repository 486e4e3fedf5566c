package store

import (
	"context"
	"fmt"
)

// Ready checks that the database answers and holds the schema this binary needs; the error says
// which of the two is wrong (errors.Is(err, ErrSchemaOutdated) for the schema).
func (s *Store) Ready(ctx context.Context) error {
	return s.CheckSchema(ctx)
}

// OldestSuccessAge is, on the database's clock, how long ago the least recently synced user of
// profiles last synced successfully (a user that never did counts from its enrolment). ok is
// false when no user is enrolled. One aggregate over sync_state: cheap enough for every scrape.
func (s *Store) OldestSuccessAge(ctx context.Context) (seconds float64, ok bool, err error) {
	var age *float64
	err = s.pool.QueryRow(ctx, `
		select extract(epoch from now() - min(coalesce(s.last_success_at, s.enrolled_at)))::float8
		from sync_state s
		where exists (select 1 from profiles p where p.user_id = s.user_id)`).Scan(&age)
	if err != nil {
		return 0, false, fmt.Errorf("read oldest successful sync: %w", err)
	}
	if age == nil {
		return 0, false, nil
	}
	return *age, true, nil
}
