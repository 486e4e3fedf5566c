package cli

import (
	"strings"
	"testing"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

// `usage-sync migrate` over a dashboard whose tables the API roles can reach around row-level
// security (the legacy tables, created by a Supabase project's postgres, under its default
// privileges): it exits non-zero naming every exposure and its fix on its own line, and
// MIGRATE_ALLOW_EXPOSED=true migrates with a warning per exposure.
func TestMigrateCommandOnAnExposedDashboard(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.SupabaseProject)
	owner := pgtest.AsRole(t, dsn, pgtest.ProjectOwner)
	pgtest.Exec(t, owner, pgtest.Testdata(t, "dashboard-legacy.sql"))

	r := run(t, env(owner, func(c *config.Config) {
		c.LogLevel = "info"
	}), "migrate")
	if r.code != ExitRuntime {
		t.Fatalf("migrate exit %d (%v), want %d; stderr:\n%s", r.code, r.err, ExitRuntime, r.stderr)
	}
	lines := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "  public.") && strings.Contains(l, "; fix: ") {
			lines++
		}
	}
	if lines != 8 || !strings.Contains(r.stderr, "  public.user_credits: role anon can SELECT, INSERT, UPDATE, DELETE without row-level security") ||
		!strings.Contains(r.stderr, "MIGRATE_ALLOW_EXPOSED=true") {
		t.Errorf("stderr should name 8 exposures, one a line, and the way past:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout, "applied migration") {
		t.Errorf("migrate applied migrations before stopping:\n%s", r.stdout)
	}

	r = run(t, env(owner, func(c *config.Config) {
		c.LogLevel = "info"
		c.MigrateAllowExposed = true
	}), "migrate")
	if r.code != 0 {
		t.Fatalf("migrate with MIGRATE_ALLOW_EXPOSED=true exit %d (%v); stderr:\n%s", r.code, r.err, r.stderr)
	}
	if n := strings.Count(r.stderr, `"event":"migrate.exposed"`); n != 8 {
		t.Errorf("%d migrate.exposed warnings, want 8:\n%s", n, r.stderr)
	}
	if !strings.Contains(r.stdout, "applied migration") || store.SchemaVersion() == 0 {
		t.Errorf("migrate applied nothing:\n%s", r.stdout)
	}
}
