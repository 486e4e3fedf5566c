package syncer_test

import (
	"testing"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// On a database shaped like a real Supabase project, migrated by and synced as its demoted,
// non-superuser postgres, with the API roles' rights taken back: the worker syncs and charges
// exactly once, and the invariants hold.
func TestSyncOnASupabaseProjectAsItsPostgres(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{flavor: pgtest.SupabaseProject, sim: simulator.Config{Seed: 61, Users: 3, KeysPerUser: 2, TasksPerUser: 4, HistoryDays: 2}})
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	rows := e.q(`select count(*) from credit_ledger`)
	if rows == 0 {
		t.Fatal("the first cycle charged nothing")
	}
	if owner := e.q(`select count(*) from pg_class where relname = 'credit_ledger' and pg_get_userbyid(relowner) = '` + pgtest.ProjectOwner + `'`); owner != 1 {
		t.Fatalf("credit_ledger is not owned by %s: the test did not run as the demoted role", pgtest.ProjectOwner)
	}
	e.cycle(s, syncer.CycleOptions{All: true})
	if again := e.q(`select count(*) from credit_ledger`); again != rows {
		t.Fatalf("replaying unchanged data added %d ledger rows", again-rows)
	}
	e.checkInvariants(true)
}
