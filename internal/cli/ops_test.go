package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
)

// opsAddr waits for the daemon's metrics.listening event and returns the bound address.
func opsAddr(t *testing.T, stderr *output) string {
	t.Helper()
	wait(t, stderr.when(`"event":"metrics.listening"`), "metrics.listening", stderr)
	m := regexp.MustCompile(`"event":"metrics.listening","addr":"([^"]+)"`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no address in:\n%s", stderr.String())
	}
	return "http://" + m[1]
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// expectGet fails the test unless GET url answers code with body in it.
func expectGet(t *testing.T, url string, code int, body string) {
	t.Helper()
	got, b := get(t, url)
	if got != code || !strings.Contains(b, body) {
		t.Fatalf("GET %s = %d %q, want %d with %q", url, got, b, code, body)
	}
}

// The probes of a running daemon: live and ready after start; ready turns 503, with the reason,
// while the database is cut away (a TCP proxy drops every connection) or its schema is behind,
// and recovers by itself; live stays 200 throughout, and /metrics keeps answering.
func TestProbes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	proxy, viaProxy := pgtest.NewProxy(t, dsn)
	var stderr output
	stop := daemon(t, env(viaProxy, func(c *config.Config) {
		c.SyncEnabled = true
		c.SyncSchedule = "0 0 1 1 *"
	}), &stderr)
	base := opsAddr(t, &stderr)
	expect := func(path string, code int, body string) { t.Helper(); expectGet(t, base+path, code, body) }
	// ready recovers on its own once the database answers again: each failed check drops a
	// dead pooled connection, so it turns 200 within the pool's size of attempts.
	eventuallyReady := func() {
		t.Helper()
		for range 50 {
			if code, _ := get(t, base+"/readyz"); code == http.StatusOK {
				return
			}
		}
		t.Fatalf("/readyz never recovered; stderr:\n%s", stderr.String())
	}
	expect("/livez", 200, "ok")
	expect("/readyz", 200, "ok")
	expect("/metrics", 200, "usage_sync_cycles_total")

	proxy.SetDown(true)
	expect("/readyz", 503, "not ready: database unreachable")
	// Finding 7: the body names no database host, port or role; the log has the driver's error.
	if _, b := get(t, base+"/readyz"); strings.Contains(b, "127.0.0.1") || strings.Contains(b, "user=") || strings.Contains(b, "postgres") {
		t.Fatalf("/readyz names the database: %q", b)
	}
	wait(t, stderr.when(`"event":"health.not_ready"`), "health.not_ready with the driver's error", &stderr)
	expect("/livez", 200, "ok")
	expect("/metrics", 200, "usage_sync_user_syncs_total")
	proxy.SetDown(false)
	eventuallyReady()
	expect("/livez", 200, "ok")

	// A schema older than the binary (the migrate Job has not run yet).
	pgtest.Exec(t, dsn, `create table usage_sync.held as select * from usage_sync.schema_migrations where version > 1;
		delete from usage_sync.schema_migrations where version > 1`)
	expect("/readyz", 503, "schema behind")
	pgtest.Exec(t, dsn, `insert into usage_sync.schema_migrations select * from usage_sync.held`)
	expect("/readyz", 200, "ok")

	if err := stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	if _, err := http.Get(base + "/livez"); err == nil {
		t.Fatal("the probe listener outlived the daemon")
	}
}

// METRICS_ADDR=off serves nothing; --once serves nothing unless METRICS_ADDR is set.
func TestMetricsAddrOffAndOnce(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	r := run(t, env(dsn, func(c *config.Config) {
		c.MetricsAddr = ""
	}), "--once")
	if r.code != 0 || strings.Contains(r.stderr, "metrics.listening") {
		t.Fatalf("--once without METRICS_ADDR: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = run(t, env(dsn), "--once")
	if r.code != 0 || !strings.Contains(r.stderr, "metrics.listening") {
		t.Fatalf("--once with METRICS_ADDR: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	var stderr output
	stop := daemon(t, env(dsn, func(c *config.Config) {
		c.MetricsAddr = "off"
	}), &stderr)
	wait(t, stderr.when(`"event":"schedule.disabled"`), "schedule.disabled", &stderr)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stderr.String(), "metrics.listening") {
		t.Fatalf("METRICS_ADDR=off served:\n%s", stderr.String())
	}
}

// The dashboard's "sync now": a signed-in user calls request_sync() (as supabase.rpc does,
// through PostgREST's role and claims), and the daemon, whose schedule will not fire, syncs that
// user within its poll and nobody else, also a user backing off after failures. Through the
// transaction pooler's mode (no prepared statements, no LISTEN).
func TestRequestSyncDaemon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.MigratedDB(t, pgtest.Supabase)
	sim := simulator.New(simulator.Config{Seed: 81, Users: 3, AdminToken: "adm"})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	users := sim.Users()
	for _, u := range users {
		pgtest.Exec(t, dsn, `insert into profiles (user_id) values ('`+u+`'); insert into user_credits (user_id, credits_remaining) values ('`+u+`', 100000)`)
	}
	// users[1] failed three times and backs off for an hour.
	pgtest.Exec(t, dsn, `insert into sync_state (user_id, status, consecutive_failures, next_attempt_at, last_attempt_at)
		values ('`+users[1]+`', 'error', 3, now() + interval '1 hour', now() - interval '1 minute')`)

	var stderr output
	stop := daemon(t, env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = srv.URL + "/api/v1"
		c.UpstreamAdminToken = "adm"
		c.ChargeEnabled = true
		c.SyncEnabled = true
		c.SyncSchedule = "0 0 1 1 *"
		c.SyncRequestPoll = 100 * time.Millisecond
		c.DBPoolMode = "transaction"
	}), &stderr)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	opsAddr(t, &stderr)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	request := func(user string) bool {
		t.Helper()
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		var ok bool
		err = tx.QueryRow(ctx, `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true), public.request_sync()`,
			`{"sub": "`+user+`", "role": "authenticated"}`).Scan(new(string), new(string), &ok)
		if err != nil {
			t.Fatalf("request_sync as %s: %v", user, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	type row struct {
		status   string
		failures int
		attempts bool
	}
	state := func(user string) row {
		t.Helper()
		var r row
		if err := c.QueryRow(ctx, `select status, consecutive_failures, last_attempt_at is not null from sync_state where user_id = $1`, user).
			Scan(&r.status, &r.failures, &r.attempts); err != nil {
			t.Fatal(err)
		}
		return r
	}

	// users[0] has no sync_state yet: request_sync() enrols it.
	if !request(users[0]) {
		t.Fatal("the first request was refused")
	}
	if request(users[0]) {
		t.Fatal("a second request within the minute was taken")
	}
	wait(t, stderr.when(`"event":"sync.cycle.done"`), "the requested user's cycle", &stderr)
	if r := state(users[0]); r.status != "ok" {
		t.Fatalf("requested user: %+v", r)
	}
	if n := strings.Count(stderr.String(), `"event":"sync.user.done"`); n != 1 {
		t.Fatalf("%d users synced; only the requested one should be:\n%s", n, stderr.String())
	}
	if r := state(users[1]); r.status != "error" || r.failures != 3 {
		t.Fatalf("the backing-off user was touched: %+v", r)
	}
	// A single-user run enrols only its user: users[2] is not even enrolled.
	var touched bool
	if err := c.QueryRow(ctx, `select exists (select 1 from sync_state where user_id = $1)`, users[2]).Scan(&touched); err != nil || touched {
		t.Fatalf("an unrequested user was enrolled or synced (%v)", err)
	}

	// A user backing off after failures goes ahead of its backoff when it asks.
	if !request(users[1]) {
		t.Fatal("the backing-off user's request was refused")
	}
	wait(t, stderr.whenCount(`"event":"sync.cycle.done"`, 2), "the second requested cycle", &stderr)
	if r := state(users[1]); r.status != "ok" || r.failures != 0 {
		t.Fatalf("requested backing-off user: %+v", r)
	}
	// A single-user run enrols only its user: users[2] is not even enrolled.
	if err := c.QueryRow(ctx, `select exists (select 1 from sync_state where user_id = $1)`, users[2]).Scan(&touched); err != nil || touched {
		t.Fatalf("an unrequested user was enrolled or synced (%v)", err)
	}
	if !strings.Contains(stderr.String(), `"trigger":"request"`) {
		t.Fatalf("no request-triggered cycle in the log:\n%s", stderr.String())
	}
}
