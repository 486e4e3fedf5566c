package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

// migrateAs runs migrate on dsn logged in as role, with opts.
func migrateAs(t *testing.T, dsn, role string, opts store.Options) error {
	t.Helper()
	st, err := store.Open(context.Background(), pgtest.AsRole(t, dsn, role), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.Migrate(context.Background())
	return err
}

// assertAPIRoleContract checks, from the catalog and independently of the code's own lists,
// every table, view and sequence in schemas public and usage_sync and every function there: on
// a database where the worker created everything in public, authenticated may select the public
// tables (row-level security on) and execute public.request_sync(); anon and authenticated hold
// nothing else, TRUNCATE, TRIGGER and REFERENCES included.
func assertAPIRoleContract(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Query(ctx, `
		with role(name) as (values ('anon'), ('authenticated')),
		priv(name) as (values ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'), ('REFERENCES'), ('TRIGGER')),
		seqpriv(name) as (values ('USAGE'), ('SELECT'), ('UPDATE'))
		select c.oid::regclass::text, 'table', r.name, p.name, has_table_privilege(r.name, c.oid, p.name), c.relrowsecurity
		from pg_class c cross join role r cross join priv p
		where c.relkind in ('r', 'p', 'v', 'm', 'f') and c.relnamespace in ('public'::regnamespace, 'usage_sync'::regnamespace)
		union all
		select c.oid::regclass::text, 'sequence', r.name, p.name, has_sequence_privilege(r.name, c.oid, p.name), false
		from pg_class c cross join role r cross join seqpriv p
		where c.relkind = 'S' and c.relnamespace in ('public'::regnamespace, 'usage_sync'::regnamespace)
		union all
		select f.oid::regprocedure::text, 'function', r.name, 'EXECUTE', has_function_privilege(r.name, f.oid, 'EXECUTE'), false
		from pg_proc f cross join role r
		where f.pronamespace in ('public'::regnamespace, 'usage_sync'::regnamespace)
		union all
		select 'usage_sync', 'schema', r.name, 'USAGE', has_schema_privilege(r.name, 'usage_sync', 'USAGE'), false
		from role r
		order by 1, 2, 3, 4`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		object, kind, role, priv string
		has, rls                 bool
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.object, &x.kind, &x.role, &x.priv, &x.has, &x.rls)
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]map[string]bool{}
	for _, x := range all {
		if kinds[x.kind] == nil {
			kinds[x.kind] = map[string]bool{}
		}
		kinds[x.kind][x.object] = true
		public := !strings.HasPrefix(x.object, "usage_sync")
		want := false
		switch {
		case x.kind == "table" && public && x.role == "authenticated" && x.priv == "SELECT":
			want = true
			if !x.rls {
				t.Errorf("%s: authenticated may select it but row-level security is off", x.object)
			}
		case x.kind == "function" && x.object == "request_sync()" && x.role == "authenticated":
			want = true
		}
		if x.has != want {
			t.Errorf("%s %s: %s has %s = %v, want %v", x.kind, x.object, x.role, x.priv, x.has, want)
		}
	}
	// The walk above must have seen the worker's objects, or it proves nothing.
	for _, o := range []string{"profiles", "user_credits", "tasks", "api_usage", "api_keys", "sync_state", "credit_ledger", "usage_sync.schema_migrations", "usage_sync.cycle"} {
		if !kinds["table"][o] {
			t.Errorf("table %s not found among the objects checked", o)
		}
	}
	if !kinds["sequence"]["credit_ledger_id_seq"] || !kinds["function"]["request_sync()"] {
		t.Errorf("credit_ledger's sequence or request_sync() not found among the objects checked: %v %v", kinds["sequence"], kinds["function"])
	}
}

// TestSupabaseProjectMigrateAsDemotedPostgres migrates, twice, a database shaped like a real
// Supabase project (the default privileges grant the API roles ALL on whatever is created) as
// its non-superuser owner, and checks every worker object's privileges.
func TestSupabaseProjectMigrateAsDemotedPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.SupabaseProject)
	for i := 0; i < 2; i++ {
		if err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{}); err != nil {
			t.Fatalf("migrate #%d as %s: %v", i+1, pgtest.ProjectOwner, err)
		}
	}
	assertAPIRoleContract(t, pgtest.Pool(t, dsn))
}

// asAPIRole runs sql in a transaction as PostgREST would for a request of role (signed in as
// user when it is authenticated), rolled back afterwards.
func asAPIRole(ctx context.Context, db *pgxpool.Pool, role, user, sql string, args ...any) (pgx.Rows, pgx.Tx, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := tx.Exec(ctx, `select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`,
		role, fmt.Sprintf(`{"sub": %q, "role": %q}`, user, role)); err != nil {
		_ = tx.Rollback(ctx)
		return nil, nil, err
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, nil, err
	}
	return rows, tx, nil
}

// probe runs one statement as role and returns its error (nil when it worked).
func probe(ctx context.Context, db *pgxpool.Pool, role, user, sql string) error {
	rows, tx, err := asAPIRole(ctx, db, role, user, sql)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows.Close()
	return rows.Err()
}

func isPermissionDenied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}

// TestSupabaseProjectAPIRoleProbes makes, as PostgREST does (set local role, request.jwt.claims),
// the requests finding 6 made against a migrated Supabase-shaped database.
func TestSupabaseProjectAPIRoleProbes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.MigratedDB(t, pgtest.SupabaseProject)
	db := pgtest.Pool(t, dsn)
	const a, b = "22222222-0000-4000-8000-00000000000a", "22222222-0000-4000-8000-00000000000b"
	seedTwoUsers(t, db, a, b)
	// A trigger function an attacker could name: the probe is whether it may be attached.
	if _, err := db.Exec(ctx, `create function public.probe_bonus() returns trigger language plpgsql as $f$ begin new.credits_remaining := new.credits_remaining + 1000; return new; end $f$`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `grant execute on function public.probe_bonus() to anon, authenticated`); err != nil {
		t.Fatal(err)
	}

	for _, role := range []string{"authenticated", "anon"} {
		denied := map[string]string{
			"setval credit_ledger's sequence":  `select setval(pg_get_serial_sequence('public.credit_ledger', 'id'), 1)`,
			"nextval credit_ledger's sequence": `select nextval(pg_get_serial_sequence('public.credit_ledger', 'id'))`,
			"create trigger on user_credits":   `create trigger probe before update on public.user_credits for each row execute function public.probe_bonus()`,
			"read usage_sync.cycle":            `select * from usage_sync.cycle`,
		}
		for _, tbl := range userTables {
			denied["truncate "+tbl] = `truncate ` + tbl
			denied["update "+tbl] = `update ` + tbl + ` set user_id = user_id`
			denied["delete "+tbl] = `delete from ` + tbl
			denied["trigger on "+tbl] = `create trigger probe after insert on ` + tbl + ` for each statement execute function public.probe_bonus()`
		}
		denied["insert user_credits"] = fmt.Sprintf(`insert into user_credits (user_id, credits_remaining) values ('%s', 1) on conflict do nothing`, a)
		denied["insert sync_state"] = fmt.Sprintf(`insert into sync_state (user_id) values ('%s') on conflict do nothing`, a)
		denied["insert tasks"] = fmt.Sprintf(`insert into tasks (task_id, user_id) values ('tx', '%s')`, a)
		denied["insert api_usage"] = fmt.Sprintf(`insert into api_usage (user_id, count, period_start, period_end, origin) values ('%s', 1, '2999-01-01', '2999-01-02', 'usage-sync')`, a)
		denied["insert credit_ledger"] = fmt.Sprintf(`insert into credit_ledger (user_id, source, source_id, subject, amount, debited, credits_after) values ('%s', 'task', 'x', 'x', 1, 1, 1000)`, a)
		for what, sql := range denied {
			if err := probe(ctx, db, role, a, sql); !isPermissionDenied(err) {
				t.Errorf("%s as %s: err = %v, want permission denied", what, role, err)
			}
		}
	}

	// authenticated reads its own rows and nobody else's; anon reads nothing.
	assertReadsOwnRowsOnly(t, db, a)
	for _, tbl := range userTables {
		if err := probe(ctx, db, "anon", "", `select * from `+tbl); !isPermissionDenied(err) {
			t.Errorf("select %s as anon: err = %v, want permission denied", tbl, err)
		}
	}

	// request_sync() is the one function an API role executes, and only signed in.
	rows, tx, err := asAPIRole(ctx, db, "authenticated", a, `select public.request_sync()`)
	if err != nil {
		t.Fatalf("request_sync() as authenticated: %v", err)
	}
	taken, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[bool])
	if cerr := tx.Commit(ctx); err != nil || cerr != nil || !taken {
		t.Errorf("request_sync() as authenticated = %v (%v, %v), want true", taken, err, cerr)
	}
	if err := probe(ctx, db, "anon", "", `select public.request_sync()`); !isPermissionDenied(err) {
		t.Errorf("request_sync() as anon: err = %v, want permission denied", err)
	}
}

// exposedDashboard is a Supabase-shaped database holding the dashboard's older tables, created
// by the project's owner, so that the default privileges gave the API roles ALL on them and
// nothing enabled row-level security: the shape finding 6 adopted silently.
func exposedDashboard(t *testing.T) string {
	t.Helper()
	dsn := pgtest.EmptyDB(t, pgtest.SupabaseProject)
	pgtest.Exec(t, pgtest.AsRole(t, dsn, pgtest.ProjectOwner), pgtest.Testdata(t, "dashboard-legacy.sql"))
	return dsn
}

func TestMigrateStopsOnAnExposedDashboardChangingNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := exposedDashboard(t)
	db := pgtest.Pool(t, dsn)
	schema := func() string {
		var s string
		if err := db.QueryRow(ctx, `
			select coalesce(string_agg(format('%s.%s %s %s', table_schema, table_name, column_name, data_type), E'\n' order by 1), '')
			from information_schema.columns where table_schema in ('public', 'usage_sync')`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		var acl string
		if err := db.QueryRow(ctx, `select coalesce(string_agg(c.oid::regclass::text || ' ' || coalesce(c.relacl::text, '') || ' ' || c.relrowsecurity, E'\n' order by 1), '')
			from pg_class c where c.relnamespace = 'public'::regnamespace`).Scan(&acl); err != nil {
			t.Fatal(err)
		}
		return s + "\n" + acl
	}
	before := schema()

	err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{})
	var xe *store.ExposedError
	if !errors.As(err, &xe) {
		t.Fatalf("migrate over an exposed dashboard = %v, want an ExposedError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		// anon can set any balance, and read what the worker writes to tasks (webhook_url).
		"public.user_credits: role anon can SELECT, INSERT, UPDATE, DELETE without row-level security and holds TRUNCATE, TRIGGER, REFERENCES",
		"fix: revoke select, insert, update, delete, truncate, trigger, references on public.user_credits from anon;",
		"public.tasks: role authenticated can SELECT, INSERT, UPDATE, DELETE without row-level security",
		// profiles is only read by the worker: reading it is the dashboard's business, writing it is not.
		"public.profiles: role anon can INSERT, UPDATE, DELETE without row-level security and holds TRUNCATE, TRIGGER, REFERENCES",
		"MIGRATE_ALLOW_EXPOSED=true",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	// 4 adopted tables (api_keys is missing) x 2 roles.
	if len(xe.Exposures) != 8 {
		t.Errorf("%d exposures, want 8 (4 tables x 2 roles):\n%s", len(xe.Exposures), msg)
	}
	if after := schema(); after != before {
		t.Errorf("migrate changed the schema before stopping:\nbefore %s\nafter  %s", before, after)
	}

	// MIGRATE_ALLOW_EXPOSED=true proceeds, warning once per exposure.
	core, logs := observer.New(zap.WarnLevel)
	if err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{AllowExposed: true, Logger: zap.New(core)}); err != nil {
		t.Fatalf("migrate with AllowExposed: %v", err)
	}
	if n := logs.FilterMessage("migrate.exposed").Len(); n != len(xe.Exposures) {
		t.Errorf("%d migrate.exposed warnings, want %d", n, len(xe.Exposures))
	}
	var version int
	if err := db.QueryRow(ctx, `select max(version) from usage_sync.schema_migrations`).Scan(&version); err != nil || version != store.SchemaVersion() {
		t.Errorf("schema at %d (%v) after migrating anyway, want %d", version, err, store.SchemaVersion())
	}
}

// The other way through: run each fix the error names, and migrate proceeds without the flag.
func TestMigrateProceedsOnceTheExposuresAreFixed(t *testing.T) {
	t.Parallel()
	dsn := exposedDashboard(t)
	err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{})
	var xe *store.ExposedError
	if !errors.As(err, &xe) {
		t.Fatalf("migrate = %v, want an ExposedError", err)
	}
	for _, x := range xe.Exposures {
		pgtest.Exec(t, pgtest.AsRole(t, dsn, pgtest.ProjectOwner), x.Fix)
	}
	if err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{}); err != nil {
		t.Fatalf("migrate after running the fixes: %v", err)
	}
}

// A trigger whose function an API role owns runs inside the worker's charge: migrate names it.
func TestMigrateStopsOnATriggerAnAPIRoleAttached(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.SupabaseProject)
	pgtest.Exec(t, dsn, `
		create function public.bonus() returns trigger language plpgsql as $f$ begin new.credits_remaining := new.credits_remaining + 1000; return new; end $f$;
		alter function public.bonus() owner to authenticated;
		create trigger bonus before update on public.user_credits for each row execute function public.bonus();`)
	err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{})
	var xe *store.ExposedError
	if !errors.As(err, &xe) || len(xe.Exposures) != 1 ||
		!strings.Contains(err.Error(), "public.user_credits: role authenticated owns trigger bonus's function public.bonus()") ||
		!strings.Contains(err.Error(), "fix: drop trigger bonus on public.user_credits;") {
		t.Fatalf("migrate with an API role's trigger on user_credits = %v, want one exposure naming it and the drop", err)
	}
}

// dedicatedRole creates a login role of the test's own (roles are cluster-wide), dropped after
// the test's database, and returns its name.
func dedicatedRole(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "usagesync_r_" + hex.EncodeToString(b)
	admin := pgtest.BaseURL()
	pgtest.Exec(t, admin, "create role "+role+" login")
	return role
}

// grantsFor is testdata/<file> (written for role usage_sync on database postgres, the project's
// postgres being postgres) for role on the test database, checked to be what docs/supabase.md
// lists.
func grantsFor(t *testing.T, file, role, database string) string {
	t.Helper()
	sql := pgtest.Testdata(t, file)
	docs := readDoc(t, "supabase.md")
	for _, line := range strings.Split(sql, "\n") {
		stmt, _, _ := strings.Cut(line, "--")
		if stmt = strings.TrimSpace(stmt); stmt != "" && !strings.Contains(docs, stmt) {
			t.Errorf("docs/supabase.md does not list %q (testdata/%s)", stmt, file)
		}
	}
	sql = regexp.MustCompile(`\busage_sync\b`).ReplaceAllString(sql, role)
	sql = strings.ReplaceAll(sql, "on database postgres", "on database "+database)
	return strings.ReplaceAll(sql, "to postgres;", "to "+pgtest.ProjectOwner+";")
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func databaseOf(t *testing.T, dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// migrate as a dedicated role with exactly the grants docs/supabase.md lists, on a fresh
// Supabase project: it works (it failed with "permission denied for schema auth"), twice, and
// the API roles get their contract on what it created.
func TestMigrateAsADedicatedRole(t *testing.T) {
	t.Parallel()
	role := dedicatedRole(t)
	t.Cleanup(func() { pgtest.Exec(t, pgtest.BaseURL(), "drop role if exists "+role) })
	dsn := pgtest.EmptyDB(t, pgtest.SupabaseProject)
	pgtest.Exec(t, dsn, grantsFor(t, "dedicated-role.sql", role, databaseOf(t, dsn)))
	for i := 0; i < 2; i++ {
		if err := migrateAs(t, dsn, role, store.Options{}); err != nil {
			t.Fatalf("migrate #%d as a dedicated role with the documented grants: %v", i+1, err)
		}
	}
	assertAPIRoleContract(t, pgtest.Pool(t, dsn))
}

// The same on a live project, whose dashboard tables exist (with row-level security, as a
// dashboard that passes migrate's check has): migrate works, and so do the worker's reads and
// writes of the dashboard's tables.
func TestMigrateAsADedicatedRoleOverTheDashboardsTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	role := dedicatedRole(t)
	t.Cleanup(func() { pgtest.Exec(t, pgtest.BaseURL(), "drop role if exists "+role) })
	dsn := pgtest.EmptyDB(t, pgtest.SupabaseProject)
	owner := pgtest.AsRole(t, dsn, pgtest.ProjectOwner)
	pgtest.Exec(t, owner, pgtest.Testdata(t, "dashboard-legacy.sql"))
	for _, tbl := range []string{"profiles", "user_credits", "tasks", "api_usage"} {
		pgtest.Exec(t, owner, fmt.Sprintf(`alter table public.%[1]s enable row level security;
			revoke insert, update, delete, truncate, trigger, references on public.%[1]s from anon, authenticated`, tbl))
	}
	pgtest.Exec(t, dsn, grantsFor(t, "dedicated-role.sql", role, databaseOf(t, dsn)))
	pgtest.Exec(t, owner, grantsFor(t, "dedicated-role-adopted.sql", role, databaseOf(t, dsn)))
	for i := 0; i < 2; i++ {
		if err := migrateAs(t, dsn, role, store.Options{}); err != nil {
			t.Fatalf("migrate #%d as a dedicated role with the documented grants: %v", i+1, err)
		}
	}
	worker := pgtest.Pool(t, pgtest.AsRole(t, dsn, role))
	const grace = "aaaaaaaa-0000-4000-8000-000000000001"
	tx, err := worker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, q := range []string{
		`select 1 from profiles where user_id = $1 for key share`,
		`select 1 from user_credits where user_id = $1 for update`,
		`update user_credits set credits_remaining = credits_remaining - 1 where user_id = $1`,
		`insert into tasks (task_id, user_id, status) values ('t-dedicated', $1, 'pending')`,
		`insert into api_usage (user_id, api_key_id, count, period_start, period_end, origin) values ($1, 'k', 1, '2026-01-01', '2026-01-02', 'usage-sync')`,
		`insert into sync_state (user_id) values ($1)`,
	} {
		if _, err := tx.Exec(ctx, q, grace); err != nil {
			t.Errorf("the dedicated role: %s: %v", q, err)
		}
	}
}

// Grants to PUBLIC reach every API role, and column grants count: the fix names PUBLIC too.
func TestExposuresCountPublicAndColumnGrants(t *testing.T) {
	t.Parallel()
	dsn := exposedDashboard(t)
	owner := pgtest.AsRole(t, dsn, pgtest.ProjectOwner)
	err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{})
	var xe *store.ExposedError
	if !errors.As(err, &xe) {
		t.Fatalf("migrate = %v, want an ExposedError", err)
	}
	for _, x := range xe.Exposures {
		pgtest.Exec(t, owner, x.Fix)
	}
	pgtest.Exec(t, owner, `grant truncate on public.tasks to public; grant update (credits_remaining) on public.user_credits to anon`)
	err = migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{})
	if !errors.As(err, &xe) {
		t.Fatalf("migrate = %v, want an ExposedError", err)
	}
	got := make([]string, 0, len(xe.Exposures))
	for _, x := range xe.Exposures {
		got = append(got, x.Fix)
	}
	want := []string{
		"revoke truncate on public.tasks from anon, public;",
		"revoke truncate on public.tasks from authenticated, public;",
		"revoke update on public.user_credits from anon;",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("fixes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A column grant on a worker table is taken back; a right that migrate cannot revoke (the object
// belongs to another role) fails it, naming the owner to run it as.
func TestHardeningTakesBackColumnGrantsAndSaysWhatItCannot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.MigratedDB(t, pgtest.SupabaseProject)
	owner := pgtest.AsRole(t, dsn, pgtest.ProjectOwner)
	pgtest.Exec(t, owner, `grant update (credits_remaining) on public.user_credits to authenticated`)
	if err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{}); err != nil {
		t.Fatal(err)
	}
	db := pgtest.Pool(t, dsn)
	var can bool
	if err := db.QueryRow(ctx, `select has_any_column_privilege('authenticated', 'public.user_credits', 'UPDATE')`).Scan(&can); err != nil || can {
		t.Fatalf("authenticated may still update a column of user_credits (%v)", err)
	}

	// Created by the superuser, not by the role migrate runs as.
	pgtest.Exec(t, dsn, `create table usage_sync.not_mine (x int); grant all on usage_sync.not_mine to anon`)
	err := migrateAs(t, dsn, pgtest.ProjectOwner, store.Options{})
	superuser, perr := pgconn.ParseConfig(pgtest.BaseURL())
	if perr != nil {
		t.Fatal(perr)
	}
	var pe *store.PrivilegeError
	if !errors.As(err, &pe) || len(pe.Left) != 1 ||
		!strings.Contains(err.Error(), "table usage_sync.not_mine: anon holds") ||
		!strings.Contains(err.Error(), "run migrate as "+superuser.User) {
		t.Fatalf("migrate over a worker object it does not own = %v, want a PrivilegeError naming it and its owner", err)
	}
}
