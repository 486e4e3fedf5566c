package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

func openStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// snapshot renders every row of the named tables, so a test can prove they were not touched.
func snapshot(t *testing.T, db *pgxpool.Pool, tables ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tbl := range tables {
		rows, err := db.Query(context.Background(), `select to_jsonb(x)::text from `+tbl+` x order by 1`)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out[tbl] = vals
	}
	return out
}

func TestMigrateEmptyDatabaseTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	st := openStore(t, dsn)

	if err := st.CheckSchema(ctx); !errors.Is(err, store.ErrSchemaOutdated) || !strings.Contains(err.Error(), "usage-sync migrate") {
		t.Fatalf("CheckSchema on an empty database = %v, want ErrSchemaOutdated naming `usage-sync migrate`", err)
	}
	applied, err := st.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 {
		t.Fatal("first Migrate applied nothing")
	}
	again, err := st.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate = %v, %v; want nothing applied", again, err)
	}
	if err := st.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after migrate: %v", err)
	}
	db := pgtest.Pool(t, dsn)
	for _, tbl := range []string{"profiles", "user_credits", "tasks", "api_keys", "api_usage", "sync_state", "credit_ledger"} {
		var ok bool
		if err := db.QueryRow(ctx, `select to_regclass('public.'||$1) is not null`, tbl).Scan(&ok); err != nil || !ok {
			t.Errorf("table public.%s missing after migrate (%v)", tbl, err)
		}
	}
}

func TestMigrateAdoptsDashboardTablesWithoutTouchingRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.EmptyDB(t, pgtest.Supabase)
	legacy := pgtest.Testdata(t, "dashboard-legacy.sql")
	pgtest.Exec(t, dsn, legacy)
	st := openStore(t, dsn)
	db := pgtest.Pool(t, dsn)
	tables := []string{"profiles", "user_credits", "cached_api_keys"}
	before := snapshot(t, db, tables...)
	legacyCols := snapshot(t, db, "(select task_id, user_id, status, email_count, valid_count, invalid_count, catchall_count, integration, api_key_id, created_at, updated_at from tasks)",
		"(select id, user_id, api_key_id, path, count, period_start, period_end, created_at from api_usage)")

	for i := 0; i < 2; i++ {
		if _, err := st.Migrate(ctx); err != nil {
			t.Fatalf("migrate #%d over the dashboard's tables: %v", i+1, err)
		}
		pgtest.Exec(t, dsn, legacy) // the dashboard's own DDL still applies on top
	}
	after := snapshot(t, db, tables...)
	for _, tbl := range tables {
		if strings.Join(before[tbl], "\n") != strings.Join(after[tbl], "\n") {
			t.Errorf("rows of %s changed:\nbefore %v\nafter  %v", tbl, before[tbl], after[tbl])
		}
	}
	legacyAfter := snapshot(t, db, "(select task_id, user_id, status, email_count, valid_count, invalid_count, catchall_count, integration, api_key_id, created_at, updated_at from tasks)",
		"(select id, user_id, api_key_id, path, count, period_start, period_end, created_at from api_usage)")
	for k := range legacyCols {
		if strings.Join(legacyCols[k], "\n") != strings.Join(legacyAfter[k], "\n") {
			t.Errorf("dashboard columns changed in %s", k)
		}
	}
	var origin string
	if err := db.QueryRow(ctx, `select origin from api_usage where path = '/verify'`).Scan(&origin); err != nil || origin != "dashboard" {
		t.Errorf("the dashboard's api_usage row has origin %q (%v), want dashboard", origin, err)
	}
	// The dashboard's tables keep whatever row-level security they had: the worker protects only
	// the tables it creates.
	var rls bool
	if err := db.QueryRow(ctx, `select relrowsecurity from pg_class where oid = 'public.tasks'::regclass`).Scan(&rls); err != nil || rls {
		t.Errorf("migrate turned on RLS on the dashboard's tasks table (rls=%v, err=%v)", rls, err)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.EmptyDB(t, pgtest.Supabase)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	counts := make([]int, 3)
	for i := range errs {
		st := openStore(t, dsn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied, err := st.Migrate(ctx)
			errs[i], counts[i] = err, len(applied)
		}()
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
		total += counts[i]
	}
	if want := len(mustMigrations(t)); total != want {
		t.Fatalf("three concurrent migrators applied %d migrations between them, want exactly %d", total, want)
	}
}

func mustMigrations(t *testing.T) []int {
	st := openStore(t, pgtest.EmptyDB(t, pgtest.Plain))
	applied, err := st.Migrate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return make([]int, len(applied))
}

func TestRowLevelSecurityIsolatesUsers(t *testing.T) {
	t.Parallel()
	db := pgtest.Pool(t, pgtest.MigratedDB(t, pgtest.Supabase))
	const a, b = "11111111-0000-4000-8000-00000000000a", "11111111-0000-4000-8000-00000000000b"
	seedTwoUsers(t, db, a, b)
	assertReadsOwnRowsOnly(t, db, a)
}

// userTables are the public tables holding a user_id column that a signed-in user may read.
var userTables = []string{"profiles", "user_credits", "sync_state", "api_keys", "api_usage", "tasks", "credit_ledger"}

// seedTwoUsers gives users a and b one row each in every table of userTables.
func seedTwoUsers(t *testing.T, db *pgxpool.Pool, a, b string) {
	t.Helper()
	for _, q := range []string{
		`insert into profiles (user_id) values ($1), ($2)`,
		`insert into user_credits (user_id, credits_remaining) values ($1, 100), ($2, 100)`,
		`insert into sync_state (user_id) values ($1), ($2)`,
		`insert into api_keys (id, user_id) values ('ka', $1), ('kb', $2)`,
		`insert into api_usage (user_id, api_key_id, count, period_start, period_end, origin) values ($1, 'ka', 1, '2026-01-01', '2026-01-02', 'usage-sync'), ($2, 'kb', 1, '2026-01-01', '2026-01-02', 'usage-sync')`,
		`insert into tasks (task_id, user_id) values ('ta', $1), ('tb', $2)`,
		`insert into credit_ledger (user_id, source, source_id, subject, amount, debited, credits_after) values ($1, 'task', 'ta', 'ta', 1, 1, 99), ($2, 'task', 'tb', 'tb', 1, 1, 99)`,
	} {
		if _, err := db.Exec(context.Background(), q, a, b); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// assertReadsOwnRowsOnly checks that user a, signed in as PostgREST signs it in, reads exactly its
// own row of every table of userTables.
func assertReadsOwnRowsOnly(t *testing.T, db *pgxpool.Pool, a string) {
	t.Helper()
	ctx := context.Background()
	for _, tbl := range userTables {
		rows, tx, err := asAPIRole(ctx, db, "authenticated", a, `select user_id::text from `+tbl)
		if err != nil {
			t.Fatalf("select %s as authenticated: %v", tbl, err)
		}
		seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
		_ = tx.Rollback(ctx)
		if err != nil || len(seen) != 1 || seen[0] != a {
			t.Errorf("authenticated user a reading %s sees %v (%v), want only its own row", tbl, seen, err)
		}
	}
}

// The worker's bookkeeping (migration 0008) is closed to the API roles even where default
// privileges would have granted them everything on new tables, as on every Supabase project.
func TestBookkeepingIsClosedToAPIRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.EmptyDB(t, pgtest.Supabase)
	pgtest.Exec(t, dsn, `
		create schema if not exists usage_sync;
		alter default privileges in schema usage_sync grant all on tables to anon, authenticated;`)
	if _, err := openStore(t, dsn).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db := pgtest.Pool(t, dsn)
	for _, tbl := range []string{"usage_sync.keys", "usage_sync.key_days", "usage_sync.purpose_days", "usage_sync.tasks", "usage_sync.go_live"} {
		for _, role := range []string{"anon", "authenticated"} {
			for _, priv := range []string{"select", "insert", "update", "delete", "truncate", "references", "trigger"} {
				var has bool
				if err := db.QueryRow(ctx, `select has_table_privilege($1, $2, $3)`, role, tbl, priv).Scan(&has); err != nil {
					t.Fatal(err)
				}
				if has {
					t.Errorf("%s has %s on %s", role, priv, tbl)
				}
			}
		}
	}
}
