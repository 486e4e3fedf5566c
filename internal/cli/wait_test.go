package cli

import (
	"strings"
	"testing"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
)

// A daemon started while its database is cut away stays up: it logs each attempt with the
// reason, answers /livez 200, /readyz 503 and /metrics (the database gauge at 0), keeps waiting
// while the schema is behind, and begins its schedule once the database answers migrated.
func TestDaemonWaitsForItsDatabase(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	proxy, viaProxy := pgtest.NewProxy(t, dsn)
	proxy.SetDown(true)
	var stderr output
	stop := daemon(t, env(viaProxy, func(c *config.Config) {
		c.SyncEnabled = true
		c.SyncSchedule = "@every 1s"
	}), &stderr)
	base := opsAddr(t, &stderr)
	wait(t, stderr.when(`"event":"daemon.database_wait","attempt":1`), "the first failed attempt", &stderr)
	expect := func(path string, code int, body string) { t.Helper(); expectGet(t, base+path, code, body) }
	expect("/livez", 200, "ok")
	expect("/readyz", 503, "not ready: database unreachable")
	expect("/metrics", 200, "\nusage_sync_database_up 0\n")
	if !strings.Contains(stderr.String(), `"level":"warn"`) || !strings.Contains(stderr.String(), `"error":"database unreachable`) {
		t.Fatalf("the attempt should be logged at warn with its reason:\n%s", stderr.String())
	}

	// The database answers, its schema is behind: still waiting, now for the migration.
	proxy.SetDown(false)
	wait(t, stderr.when(`"error":"schema behind`), "an attempt that finds the schema behind", &stderr)
	expect("/readyz", 503, "schema behind")
	if strings.Contains(stderr.String(), "sync.cycle") {
		t.Fatalf("a cycle ran before the schema was current:\n%s", stderr.String())
	}
	if r := run(t, env(dsn), "migrate"); r.code != 0 {
		t.Fatalf("migrate: exit %d:\n%s", r.code, r.stderr)
	}
	wait(t, stderr.when(`"event":"daemon.database_ready"`), "daemon.database_ready", &stderr)
	wait(t, stderr.when(`"event":"sync.cycle.done"`), "a scheduled cycle", &stderr)
	expect("/readyz", 200, "ok")
	expect("/metrics", 200, "\nusage_sync_database_up 1\n")
	if err := stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
}

// A signal ends the wait at once: the daemon stops cleanly without ever reaching its database.
func TestDaemonStopsWhileWaiting(t *testing.T) {
	t.Parallel()
	var stderr output
	stop := daemon(t, env(closedDB, func(c *config.Config) {
		c.SyncEnabled = true
	}), &stderr)
	wait(t, stderr.when(`"event":"daemon.database_wait"`), "a failed attempt", &stderr)
	if err := stop(); err != nil {
		t.Fatalf("Run after a signal while waiting = %v, want nil", err)
	}
	if !strings.Contains(stderr.String(), `"event":"daemon.stopped","while":"waiting for the database"`) {
		t.Fatalf("no daemon.stopped while waiting:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "run.failed") {
		t.Fatalf("a signal while waiting is not a failure:\n%s", stderr.String())
	}
}
