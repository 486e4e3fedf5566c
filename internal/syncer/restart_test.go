package syncer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// restart takes the database away as a restart does: it cuts every connection through the proxy
// and ends the server processes behind them, waiting until they are gone. Cutting the sockets
// alone is not enough: a server process can still execute a statement it had already been sent
// (a claim, say) after the test has moved on, and lease a user behind its back.
func restart(ctx context.Context, p *pgtest.Proxy, direct *pgxpool.Pool) error {
	var before int
	if err := direct.QueryRow(ctx, `
		select count(*) from pg_stat_activity where datname = current_database() and application_name = $1`,
		proxiedApp).Scan(&before); err != nil {
		return err
	}
	if before == 0 {
		return fmt.Errorf("no connection through the proxy is named %s: the restart would end nothing", proxiedApp)
	}
	p.SetDown(true)
	// pg_terminate_backend(pid, timeout) returns once the process has exited (false, with a
	// warning, for one that exited by itself meanwhile), so the count afterwards says whether
	// any is left. The proxied connections are told apart by their application_name.
	for range 3 {
		if _, err := direct.Exec(ctx, `
			select pg_terminate_backend(pid, 60000) from pg_stat_activity
			where datname = current_database() and application_name = $1`, proxiedApp); err != nil {
			return err
		}
		var left int
		if err := direct.QueryRow(ctx, `
			select count(*) from pg_stat_activity where datname = current_database() and application_name = $1`,
			proxiedApp).Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
	}
	return fmt.Errorf("server processes behind the proxy outlived pg_terminate_backend")
}

// proxiedApp is the application_name of the worker's connections through the proxy.
const proxiedApp = "usage-sync-through-proxy"

func TestDatabaseRestart(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 32, Users: 3, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2}})
	proxy, dsn := pgtest.NewProxy(t, e.dsn)
	if strings.Contains(dsn, "?") {
		dsn += "&application_name=" + proxiedApp
	} else {
		dsn += "?application_name=" + proxiedApp
	}
	st, err := store.Open(context.Background(), dsn, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s := e.newSyncer(st, e.client(), e.opts)

	// The database goes away while the first user is between its reads and its write.
	var (
		once       sync.Once
		restartErr error
	)
	s.SetHooks(&syncer.Hooks{BeforeApply: func(context.Context, string) error {
		once.Do(func() { restartErr = restart(context.Background(), proxy, e.db) })
		return nil
	}})
	sum, err := s.RunCycle(context.Background(), syncer.CycleOptions{})
	if restartErr != nil {
		t.Fatalf("restart: %v", restartErr)
	}
	if err == nil && sum.OK() {
		t.Fatalf("a cycle with the database gone reported success: %+v", sum)
	}
	// While it is down a cycle fails fast with an error that says so; nothing panics.
	if _, err := s.RunCycle(context.Background(), syncer.CycleOptions{}); err == nil || !store.IsUnavailable(err) && !strings.Contains(err.Error(), "connect") {
		t.Fatalf("cycle against a downed database: %v", err)
	}
	proxy.SetDown(false)
	e.checkInvariants(false)
	// Leases the downed database could not release run out (SYNC_LEASE_TTL); then all is synced.
	if _, err := e.db.Exec(context.Background(), `update sync_state set lease_expires_at = $1::timestamptz - interval '1 second' where lease_owner is not null`, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.SetHooks(nil)
	sum, err = s.RunCycle(context.Background(), syncer.CycleOptions{All: true})
	if err != nil || !sum.OK() || sum.Synced != 3 {
		t.Fatalf("after the database came back: %+v, %v", sum, err)
	}
	for _, u := range e.sim.Users() {
		e.assertMirrors(u)
	}
	e.checkInvariants(true)
}
