package cli

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
)

// simulated returns a migrated database whose profiles are the users of a simulator (admin token
// "adm", seeded with seed), each with 100,000 credits, and the simulator's base URL.
func simulated(t *testing.T, seed int64, users int) (dsn string, sim *simulator.Sim, base string) {
	t.Helper()
	dsn = pgtest.MigratedDB(t, pgtest.Plain)
	sim = simulator.New(simulator.Config{Seed: seed, Users: users, AdminToken: "adm"})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	for _, u := range sim.Users() {
		pgtest.Exec(t, dsn, `insert into profiles (user_id) values ('`+u+`'); insert into user_credits (user_id, credits_remaining) values ('`+u+`', 100000)`)
	}
	return dsn, sim, srv.URL + "/api/v1"
}

// --once end to end: the real command line, a real database and the simulator over HTTP.
func TestOnceSyncsEveryUserAndReportsFailures(t *testing.T) {
	t.Parallel()
	dsn, sim, base := simulated(t, 5, 3)
	getenv := env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = base
		c.UpstreamAdminToken = "adm"
		c.UpstreamRetryMax = time.Second
		c.ChargeEnabled = true
	})

	r := run(t, getenv, "--once")
	if r.code != 0 || !strings.Contains(r.stderr, "3 users: 3 synced") {
		t.Fatalf("--once exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, `"event":"sync.cycle.done"`) || strings.Contains(r.stderr, "adm\"") {
		t.Fatalf("log lacks sync.cycle.done or leaks the token:\n%s", r.stderr)
	}

	bad := sim.Users()[2]
	sim.SetFault(bad, simulator.Fault{Status: 401})
	r = run(t, getenv, "--once", "--all")
	if r.code != ExitUsersFailed {
		t.Fatalf("--once with a refused user exited %d, want %d", r.code, ExitUsersFailed)
	}
	last := r.stderr[strings.LastIndex(strings.TrimRight(r.stderr, "\n"), "\n")+1:]
	if !strings.HasPrefix(last, "usage-sync: run ") || !strings.Contains(last, "1 failed") || !strings.Contains(last, bad) {
		t.Fatalf("last stderr line is not the one-line summary naming the failed user: %q", last)
	}

	r = run(t, getenv, "--once", "--user", "00000000-0000-4000-8000-000000000000")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "is not in profiles") {
		t.Fatalf("--user for an unknown user: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
