package syncer_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// clock is the one "now" the simulator and the syncer share, so task progress and day windows
// agree; it moves only when a test moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// env is one test's world: a fresh database, a simulator behind real HTTP, and a syncer.
type env struct {
	t          testing.TB
	st         *store.Store
	dsn        string
	db         *pgxpool.Pool // the test's own pool on the database, for seeding and inspecting rows
	sim        *simulator.Sim
	base       string
	clock      *clock
	logs       *observer.ObservedLogs
	log        *zap.Logger
	opts       syncer.Options
	balances   map[string]int64
	chargeFrom time.Time
}

type envConfig struct {
	sim      simulator.Config
	opts     syncer.Options
	balance  int64
	balances map[string]int64
	shadow   bool // CHARGE_ENABLED=false
	// noChargeFrom leaves CHARGE_FROM empty: each user is charged from its go-live.
	noChargeFrom bool
	flavor       pgtest.Flavor // "": plain
	start        time.Time     // where the clock starts; zero: the real now
}

// setup builds an env. Unless the config says otherwise, the clock stands at the real now and
// CHARGE_FROM is two days ago at midnight, so the simulator's history is charged. The syncer runs
// on the clock in Go and in SQL alike, so it may stand anywhere.
func setup(t testing.TB, c envConfig) *env {
	t.Helper()
	if c.flavor == "" {
		c.flavor = pgtest.Plain
	}
	st, dsn := pgtest.Open(t, c.flavor)
	clk := &clock{t: time.Now().UTC()}
	if !c.start.IsZero() {
		clk.t = c.start.UTC()
	}
	if c.sim.Now == nil {
		c.sim.Now = clk.Now
	}
	if c.sim.AdminToken == "" {
		c.sim.AdminToken = "test-admin"
	}
	if c.sim.JWTSecret == "" {
		c.sim.JWTSecret = "test-jwt-secret"
	}
	sim := simulator.New(c.sim)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	core, logs := observer.New(zap.DebugLevel)
	e := &env{t: t, st: st, dsn: dsn, db: pgtest.Pool(t, dsn), sim: sim, base: srv.URL + "/api/v1", clock: clk, logs: logs, log: zap.New(core), balances: map[string]int64{}}
	cf := time.Date(clk.t.Year(), clk.t.Month(), clk.t.Day()-2, 0, 0, 0, 0, time.UTC)
	e.chargeFrom = cf
	e.opts = c.opts
	switch {
	case c.noChargeFrom:
		e.opts.ChargeFrom = nil
	case e.opts.ChargeFrom == nil:
		e.opts.ChargeFrom = &cf
	default:
		e.chargeFrom = *e.opts.ChargeFrom
	}
	if e.opts.Concurrency == 0 {
		e.opts.Concurrency = 3
	}
	e.opts.ChargeEnabled = !c.shadow
	bal := c.balance
	if bal == 0 {
		bal = 1_000_000
	}
	for _, u := range sim.Users() {
		b := bal
		if v, ok := c.balances[u]; ok {
			b = v
		}
		e.addProfile(u, b)
	}
	return e
}

func (e *env) addProfile(user string, balance int64) {
	e.t.Helper()
	_, err := e.db.Exec(context.Background(), `
		with p as (insert into profiles (user_id) values ($1) on conflict do nothing)
		insert into user_credits (user_id, credits_remaining) values ($1, $2) on conflict do nothing`, user, balance)
	if err != nil {
		e.t.Fatal(err)
	}
	e.balances[user] = balance
}

// client builds an upstream client with retry waits short enough for tests.
func (e *env) client(mod ...func(*upstream.Config)) *upstream.Client {
	e.t.Helper()
	cfg := upstream.Config{BaseURL: e.base, AdminToken: "test-admin", RequestTimeout: 5 * time.Second,
		MaxElapsed: 3 * time.Second, MaxRetryAfter: 2 * time.Second, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: e.log}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := upstream.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) syncer(mod ...func(*syncer.Options)) *syncer.Syncer {
	o := e.opts
	for _, m := range mod {
		m(&o)
	}
	return e.newSyncer(e.st, e.client(), o)
}

// newSyncer builds a syncer on st and up that runs on the env's clock, as every syncer of a
// test does: the simulator's tasks and days move with it.
func (e *env) newSyncer(st *store.Store, up syncer.Upstream, o syncer.Options) *syncer.Syncer {
	s := syncer.New(st, up, e.log, o)
	s.SetClock(e.clock.Now)
	return s
}

// cycle runs one --once-style cycle and fails the test if the cycle itself could not run.
func (e *env) cycle(s *syncer.Syncer, o syncer.CycleOptions) syncer.Summary {
	e.t.Helper()
	sum, err := s.RunCycle(context.Background(), o)
	if err != nil {
		e.t.Fatalf("cycle: %v", err)
	}
	return sum
}

func (e *env) q(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

type syncRow struct {
	Status              string
	LastError           *string
	ConsecutiveFailures int
	NextAttemptInFuture bool
	LastSuccess         bool
}

func (e *env) syncState(user string) syncRow {
	e.t.Helper()
	var r syncRow
	err := e.db.QueryRow(context.Background(), `
		select status, last_error, consecutive_failures, next_attempt_at > $2, last_success_at is not null
		from sync_state where user_id = $1`, user, e.clock.Now()).Scan(&r.Status, &r.LastError, &r.ConsecutiveFailures, &r.NextAttemptInFuture, &r.LastSuccess)
	if err != nil {
		e.t.Fatalf("sync_state of %s: %v", user, err)
	}
	return r
}

func (e *env) events(name string) []observer.LoggedEntry {
	return e.logs.FilterMessage(name).All()
}

func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// checkLeaseHeld has a second worker try user u while the first is still syncing it (its result
// comes on done): the second must skip the user, its lease held by a live worker. Then release
// lets the first finish, which must sync the user with no lease lost and the invariants intact.
func (e *env) checkLeaseHeld(u string, release func(), done <-chan syncer.Summary) {
	e.t.Helper()
	b := e.syncer(func(o *syncer.Options) { o.WorkerID = "b" })
	if sum := e.cycle(b, syncer.CycleOptions{UserID: u}); sum.Synced != 0 || sum.Skipped != 1 {
		e.t.Fatalf("worker b: %+v; want the user skipped, its lease held by a live worker", sum)
	}
	release()
	if sum := <-done; sum.Synced != 1 {
		e.t.Fatalf("worker a: %+v; want its user synced", sum)
	}
	if lost := len(e.events("sync.user.lease_lost")); lost != 0 {
		e.t.Fatalf("%d users were taken over from a live worker", lost)
	}
	e.checkInvariants(true)
}
