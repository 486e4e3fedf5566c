package syncer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// A database that accepts connections and never answers (a proxy that forwards nothing) aborts
// the cycle within the store's bounds, whether it hangs before a cycle or under a user's write
// transaction; once it answers again, the next cycle syncs everyone and nothing is charged twice.
// The test's own deadline is far above the bounds: a cycle held by the hang would hit it.
func TestHungDatabaseAbortsTheCycle(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 33, Users: 5, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2}})
	proxy, dsn := pgtest.NewProxy(t, e.dsn)
	st, err := store.Open(context.Background(), dsn, store.Options{MaxConns: 4,
		ConnectTimeout: 500 * time.Millisecond, StatementTimeout: 500 * time.Millisecond, TxTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	// One reader: it claims each user while reading the one before (claimLoop), so with five
	// users a claim is still to come after the hang that starts under the first user's write.
	opts := e.opts
	opts.Concurrency = 1
	s := e.newSyncer(st, e.client(), opts)
	held := func(name string, o syncer.CycleOptions) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sum, err := s.RunCycle(ctx, o)
		if ctx.Err() != nil {
			t.Fatalf("%s: the cycle was held until the test's deadline: %+v, %v", name, sum, err)
		}
		if err == nil {
			t.Fatalf("%s: a cycle against a hung database ran to its end: %+v", name, sum)
		}
	}

	// Hung before the cycle starts: the pool's open connections and new ones alike.
	proxy.SetHung(true)
	held("hung at the start", syncer.CycleOptions{})
	proxy.SetHung(false)

	// Hung under the first user's write transaction.
	var once sync.Once
	s.SetHooks(&syncer.Hooks{BeforeApply: func(context.Context, string) error {
		once.Do(func() { proxy.SetHung(true) })
		return nil
	}})
	held("hung mid-cycle", syncer.CycleOptions{All: true})
	s.SetHooks(nil)
	// Connections the hang left behind are dropped; the database answers again.
	proxy.SetDown(true)
	proxy.SetDown(false)
	e.checkInvariants(false)
	if _, err := e.db.Exec(context.Background(), `update sync_state set lease_expires_at = $1::timestamptz - interval '1 second' where lease_owner is not null`, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	sum, err := s.RunCycle(context.Background(), syncer.CycleOptions{All: true})
	if err != nil || !sum.OK() || sum.Synced != 5 {
		t.Fatalf("after the database answered again: %+v, %v", sum, err)
	}
	for _, u := range e.sim.Users() {
		e.assertMirrors(u)
	}
	e.checkInvariants(true)
}
