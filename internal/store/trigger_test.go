package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/clock"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

// at is a clock that stands still at t.
func at(t time.Time) clock.Clock { return func() time.Time { return t } }

// Triggers racing on several replicas (here: goroutines on separate connections) for one user
// within TRIGGER_MIN_INTERVAL: exactly one is taken. A request made meanwhile waits: Requested
// leaves the user out until the interval has passed.
func TestTakeTriggerOncePerInterval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dsn := pgtest.Open(t, pgtest.Supabase)
	pgtest.Exec(t, dsn, `insert into profiles (user_id) values ('`+userA+`'), ('`+userB+`')`)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	if n, err := st.Enrol(ctx, at(now), userA); err != nil || n != 1 {
		t.Fatalf("Enrol(only A) = %d, %v; want 1", n, err)
	}
	const racers = 16
	verdicts := make(chan store.TriggerVerdict, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, err := st.TakeTrigger(ctx, store.TriggerRequest{UserID: userA, MinInterval: 30 * time.Second, RespectBackoff: true, Clock: at(now)})
			if err != nil {
				t.Error(err)
			}
			verdicts <- v
		}()
	}
	close(start)
	wg.Wait()
	close(verdicts)
	got := map[store.TriggerVerdict]int{}
	for v := range verdicts {
		got[v]++
	}
	if got[store.TriggerTaken] != 1 || got[store.TriggerTooSoon] != racers-1 {
		t.Fatalf("verdicts %v; want one taken, the rest too soon", got)
	}
	if v, err := st.TakeTrigger(ctx, store.TriggerRequest{UserID: userB, MinInterval: time.Second, Clock: at(now)}); err != nil || v != store.TriggerNoUser {
		t.Fatalf("a user not enrolled: %v, %v", v, err)
	}

	// A request within the interval waits; after it, the poll finds it.
	c := connect(t, dsn)
	if ok, err := callRequestSync(ctx, c, "authenticated", userA); err != nil || !ok {
		t.Fatalf("request: %v, %v", ok, err)
	}
	soon := now.Add(10 * time.Second)
	if users, err := st.Requested(ctx, at(soon), 10, 30*time.Second); err != nil || len(users) != 0 {
		t.Fatalf("Requested within the interval = %v, %v; want none", users, err)
	}
	later := now.Add(31 * time.Second)
	if users, err := st.Requested(ctx, at(later), 10, 30*time.Second); err != nil || len(users) != 1 {
		t.Fatalf("Requested after the interval = %v, %v; want A", users, err)
	}
	// A webhook respects the backoff; a request may skip it.
	pgtest.Exec(t, dsn, `update sync_state set next_attempt_at = '2026-12-01T13:00:00Z' where user_id = '`+userA+`'`)
	if v, _ := st.TakeTrigger(ctx, store.TriggerRequest{UserID: userA, MinInterval: 30 * time.Second, RespectBackoff: true, Clock: at(later)}); v != store.TriggerBackingOff {
		t.Fatalf("webhook in backoff: %v", v)
	}
	if v, _ := st.TakeTrigger(ctx, store.TriggerRequest{UserID: userA, MinInterval: 30 * time.Second, Clock: at(later)}); v != store.TriggerTaken {
		t.Fatalf("request in backoff: %v", v)
	}
}
