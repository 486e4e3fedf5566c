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

// corrections is a world for the operator's commands: users with one key each, requests on the
// day two days ago (settled whatever the time of day), CHARGE_FROM three days ago at midnight,
// every user synced once. It returns the environment and that day.
func corrections(t *testing.T, users ...string) (dsn string, sim *simulator.Sim, getenv Load, d time.Time) {
	t.Helper()
	dsn = pgtest.MigratedDB(t, pgtest.Plain)
	sim = simulator.New(simulator.Config{Users: -1, AdminToken: "adm"})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	d = today.AddDate(0, 0, -2)
	for _, u := range users {
		sim.AddUser(u)
		sim.AddKey(u, simulator.Key{ID: keyOf(u), Purpose: "zapier", CreatedAt: d.AddDate(0, 0, -1)})
		for i := range 10 {
			sim.AddRequests(u, keyOf(u), d.Add(time.Hour+time.Duration(i)*time.Minute))
		}
		pgtest.Exec(t, dsn, `insert into profiles (user_id) values ('`+u+`'); insert into user_credits (user_id, credits_remaining) values ('`+u+`', 1000)`)
	}
	getenv = env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = srv.URL + "/api/v1"
		c.UpstreamAdminToken = "adm"
		c.UpstreamRetryMax = time.Second
		c.ChargeEnabled = true
		c.ChargeFrom = ref(today.AddDate(0, 0, -3).Truncate(time.Second))
		c.LogLevel = "info"
	})
	if r := run(t, getenv, "--once", "--all"); r.code != 0 {
		t.Fatalf("--once exit %d:\n%s", r.code, r.stderr)
	}
	return dsn, sim, getenv, d
}

func dayCharged(t *testing.T, dsn, u string, d time.Time) int64 {
	t.Helper()
	return pgtest.QueryInt(t, dsn, `select coalesce(sum(amount), 0) from credit_ledger where user_id = $1 and source = 'key_requests' and meta->>'day' = $2`,
		u, d.Format(time.DateOnly))
}

func TestResyncCommand(t *testing.T) {
	t.Parallel()
	const u = "55555555-0000-4000-8000-000000000001"
	dsn, sim, getenv, d := corrections(t, u)
	if got := dayCharged(t, dsn, u, d); got != 10 {
		t.Fatalf("the settled day was charged %d, want 10", got)
	}
	for i := range 7 {
		sim.AddRequests(u, keyOf(u), d.Add(3*time.Hour+time.Duration(i)*time.Second))
	}
	if r := run(t, getenv, "--once", "--user", u); r.code != 0 || dayCharged(t, dsn, u, d) != 10 {
		t.Fatalf("--once after a correction of a settled day: exit %d, day charged %d; want 0 and 10 (settled days are not read again)",
			r.code, dayCharged(t, dsn, u, d))
	}
	day := d.Format(time.DateOnly)
	r := run(t, getenv, "resync", "--user", u, "--from", day, "--to", day)
	if r.code != 0 {
		t.Fatalf("resync exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	row := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, day) {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	if row != day+" 10 → 17 10 → 17 0 7" || !strings.Contains(r.stdout, "charged 7, debited 7") {
		t.Fatalf("resync table row %q; want %q; stdout:\n%s", row, day+" 10 → 17 10 → 17 0 7", r.stdout)
	}
	if got := dayCharged(t, dsn, u, d); got != 17 {
		t.Fatalf("the day was charged %d after resync, want 17", got)
	}
	if r := run(t, getenv, "resync", "--user", u, "--from", day, "--to", day); r.code != 0 || !strings.Contains(r.stdout, "charged 0,") {
		t.Fatalf("a second resync: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	if got := dayCharged(t, dsn, u, d); got != 17 {
		t.Fatalf("a second resync charged the day up to %d", got)
	}

	long := d.AddDate(0, 0, -100).Format(time.DateOnly)
	if r := run(t, getenv, "resync", "--user", u, "--from", long, "--to", day); r.code != ExitUsage || !strings.Contains(r.stderr, "at most 90") {
		t.Fatalf("a 101-day range: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := run(t, getenv, "resync", "--user", "55555555-0000-4000-8000-00000000ffff"); r.code != ExitUsage || !strings.Contains(r.stderr, "not in profiles") {
		t.Fatalf("an unknown user: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := run(t, getenv, "resync", "--user", u, "--from", "yesterday"); r.code != ExitUsage || !strings.Contains(r.stderr, "YYYY-MM-DD") {
		t.Fatalf("a bad --from: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := run(t, env(closedDB), "resync", "--user", u); r.code != ExitRuntime {
		t.Fatalf("resync with the database down: exit %d, want %d", r.code, ExitRuntime)
	}
}

// Each operator command's --help names its flags and exit codes.
func TestOperatorCommandsHelp(t *testing.T) {
	t.Parallel()
	for cmd, flags := range map[string][]string{"resync": {"--user", "--from", "--to"}, "verify": {"--user", "--json"}} {
		r := run(t, env(closedDB), cmd, "--help")
		if r.code != 0 {
			t.Fatalf("%s --help exit %d", cmd, r.code)
		}
		for _, want := range append(flags, "Exit codes:", "  0 ", "  1 ", "  2 ", "  3 ") {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, r.stdout)
			}
		}
	}
	r := run(t, env(closedDB), "--help")
	for _, want := range []string{"usage-sync resync --user UUID", "usage-sync verify"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("usage-sync --help does not name %q", want)
		}
	}
}

// keyOf is the one key corrections gives user u.
func keyOf(u string) string { return "k-" + u[len(u)-4:] }
