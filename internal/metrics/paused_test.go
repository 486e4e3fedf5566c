package metrics_test

import (
	"context"
	"testing"

	"github.com/usage-sync/usage-sync/internal/metrics"
	"github.com/usage-sync/usage-sync/internal/pgtest"
)

// usage_sync_users_paused counts the paused users of profiles at scrape time, and a paused user,
// however long ago it last synced, is not what usage_sync_oldest_success_age_seconds reports.
func TestUsersPausedGaugeAndTheAgeGauge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dsn := pgtest.Open(t, pgtest.Plain)
	pgtest.Exec(t, dsn, `
		insert into profiles (user_id) values ('11111111-1111-4111-8111-111111111111'), ('22222222-2222-4222-8222-222222222222');
		insert into sync_state (user_id, enrolled_at, last_success_at) values
		  ('11111111-1111-4111-8111-111111111111', now() - interval '30 days', now() - interval '30 days'),
		  ('22222222-2222-4222-8222-222222222222', now() - interval '30 days', now() - interval '10 minutes');
		-- paused, but no longer in profiles: not counted
		insert into sync_state (user_id, status, paused_at, paused_by, pause_reason)
		  values (gen_random_uuid(), 'paused', now(), 'x', 'gone');`)
	m := metrics.New(st, nil)
	s := gather(t, m.Registry())
	if got := s.sum("usage_sync_users_paused"); got != 0 {
		t.Fatalf("usage_sync_users_paused = %v before any pause, want 0", got)
	}
	if age := s.sum("usage_sync_oldest_success_age_seconds"); age < 29*86400 {
		t.Fatalf("oldest success age %v: want the 30-day-old user", age)
	}
	if _, err := st.Pause(ctx, nil, "11111111-1111-4111-8111-111111111111", "dispute", "support"); err != nil {
		t.Fatal(err)
	}
	s = gather(t, m.Registry())
	if got := s.sum("usage_sync_users_paused"); got != 1 {
		t.Fatalf("usage_sync_users_paused = %v, want 1", got)
	}
	if age := s.sum("usage_sync_oldest_success_age_seconds"); age < 590 || age > 3600 {
		t.Fatalf("oldest success age %v with the stale user paused: want the other user's ten minutes", age)
	}
	if _, err := st.Resume(ctx, nil, "11111111-1111-4111-8111-111111111111"); err != nil {
		t.Fatal(err)
	}
	if got := gather(t, m.Registry()).sum("usage_sync_users_paused"); got != 0 {
		t.Fatalf("usage_sync_users_paused = %v after resume, want 0", got)
	}
}
