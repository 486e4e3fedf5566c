// Package pgtest gives each test its own database on the real PostgreSQL server, cloned from a
// migrated template, so tests run in parallel without sharing rows and never mock the database.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/migrations"
)

// DefaultURL is the machine's PostgreSQL when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// BaseURL is the server tests create their databases on.
func BaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Flavor picks what a fresh database holds before the worker's migrations.
type Flavor string

const (
	Plain    Flavor = "plain"    // an empty database
	Supabase Flavor = "supabase" // Supabase's roles and auth.uid() (testdata/supabase-auth.sql)
	// SupabaseProject is a database shaped like a real Supabase project: Supabase's roles and
	// auth.uid(), the database owned by the demoted, non-superuser postgres role
	// (testdata/supabase-postgres-role.sql, named ProjectOwner here because the test server's own
	// superuser is called postgres), and the default privileges that give the API roles ALL on
	// whatever that role creates in schema public (testdata/supabase-defaults.sql). Migrations run
	// as ProjectOwner. The URLs handed out are still the superuser's, for seeding and inspecting;
	// AsRole gives one that logs in as ProjectOwner.
	SupabaseProject Flavor = "sbproject"
)

// ProjectOwner is testdata/supabase-postgres-role.sql's stand-in for Supabase's demoted postgres.
const ProjectOwner = "supabase_postgres"

// fixturesLock serialises the fixtures that create cluster-wide roles and grant role
// memberships: two sessions doing that at once can fail with "tuple concurrently updated".
const fixturesLock = 7532

// Testdata returns the contents of testdata/<name> at the module root.
func Testdata(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", name))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return string(b)
}

// storeSource returns the contents of internal/store/<name>, next to this package.
func storeSource(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "store", name))
	if err != nil {
		t.Fatalf("read the store's source for the template key: %v", err)
	}
	return string(b)
}

func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, BaseURL())
	if err != nil {
		t.Fatalf("tests need PostgreSQL at %s (set TEST_DATABASE_URL, or run `make test`, which starts one): %v", store.Describe(BaseURL()), err)
	}
	return c
}

// urlFor returns BaseURL with its database replaced by name.
func urlFor(t testing.TB, name string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(BaseURL())
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	u := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	if cfg.Password != "" {
		u = fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
	}
	return u
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// EmptyDB creates a fresh database holding what flavor says, without the worker's migrations,
// and drops it when the test ends. It returns the database's URL.
func EmptyDB(t testing.TB, flavor Flavor) string {
	t.Helper()
	ctx := context.Background()
	admin := adminConn(t)
	defer admin.Close(ctx)
	name := randomName("usagesync_t_")
	if _, err := admin.Exec(ctx, "create database "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	dsn := urlFor(t, name)
	t.Cleanup(func() { dropDB(t, name) })
	prepare(t, admin, name, flavor)
	return dsn
}

// prepare applies flavor's fixtures to the fresh database name.
func prepare(t testing.TB, admin *pgx.Conn, name string, flavor Flavor) {
	t.Helper()
	ctx := context.Background()
	dsn := urlFor(t, name)
	switch flavor {
	case Supabase:
		Exec(t, dsn, Testdata(t, "supabase-auth.sql"))
	case SupabaseProject:
		if _, err := admin.Exec(ctx, `select pg_advisory_lock($1)`, fixturesLock); err != nil {
			t.Fatalf("lock: %v", err)
		}
		defer func() { _, _ = admin.Exec(ctx, `select pg_advisory_unlock($1)`, fixturesLock) }()
		// The role file grants on schema auth, so it follows supabase-auth.sql; the database can
		// be handed to the role only once the role exists. Schema public belongs to
		// pg_database_owner (PostgreSQL 15), so it follows the database to ProjectOwner.
		Exec(t, dsn, Testdata(t, "supabase-auth.sql"))
		Exec(t, dsn, Testdata(t, "supabase-postgres-role.sql"))
		if _, err := admin.Exec(ctx, fmt.Sprintf("alter database %s owner to %s", name, ProjectOwner)); err != nil {
			t.Fatalf("hand the test database to %s: %v", ProjectOwner, err)
		}
		// Default privileges belong to the role that creates the objects: set them as it.
		Exec(t, AsRole(t, dsn, ProjectOwner), Testdata(t, "supabase-defaults.sql"))
	}
}

// migrator is the URL migrations run through on a database of flavor.
func migrator(t testing.TB, dsn string, flavor Flavor) string {
	if flavor == SupabaseProject {
		return AsRole(t, dsn, ProjectOwner)
	}
	return dsn
}

// AsRole returns dsn logging in as role instead (without a password: the test server trusts
// local connections).
func AsRole(t testing.TB, dsn, role string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", store.Describe(dsn), err)
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", role, cfg.Host, cfg.Port, cfg.Database)
}

// Exec runs sql (several statements allowed) on the database at dsn.
func Exec(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("exec: %v", err)
	}
}

// MigratedDB returns the URL of a fresh, fully migrated database of the given flavor, cloned
// from a template built once per schema version (shared by every test process).
func MigratedDB(t testing.TB, flavor Flavor) string {
	t.Helper()
	ctx := context.Background()
	tmpl := ensureTemplate(t, flavor)
	admin := adminConn(t)
	defer admin.Close(ctx)
	name := randomName("usagesync_t_")
	owner := ""
	if flavor == SupabaseProject {
		owner = " owner " + ProjectOwner // a clone belongs to whoever creates it
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("create database %s%s template %s strategy file_copy", name, owner, tmpl)); err != nil {
		t.Fatalf("clone template %s: %v", tmpl, err)
	}
	t.Cleanup(func() { dropDB(t, name) })
	return urlFor(t, name)
}

// Open returns a store on a fresh migrated database, closed when the test ends. The store logs
// in as the role that migrated the database (ProjectOwner for SupabaseProject).
func Open(t testing.TB, flavor Flavor) (*store.Store, string) {
	t.Helper()
	dsn := MigratedDB(t, flavor)
	st, err := store.Open(context.Background(), migrator(t, dsn, flavor), store.Options{MaxConns: 10})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st, dsn
}

// Pool returns a pgx pool of the test's own on the database at dsn, closed when the test ends:
// tests seed and inspect rows through it, so the store exposes no connection of its own.
func Pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open test pool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func dropDB(t testing.TB, name string) {
	ctx := context.Background()
	admin := adminConn(t)
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "drop database if exists "+name+" with (force)"); err != nil {
		t.Logf("drop test database %s: %v", name, err)
	}
}

// ensureTemplate builds usagesync_tmpl_<flavor>_<hash of the migrations> unless it exists.
// A session advisory lock on the admin connection keeps parallel test processes from building
// the same template twice.
func ensureTemplate(t testing.TB, flavor Flavor) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("usagesync_tmpl_%s_%s", flavor, templateHash(t, flavor))
	admin := adminConn(t)
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `select pg_advisory_lock(7531)`); err != nil {
		t.Fatalf("lock: %v", err)
	}
	defer func() { _, _ = admin.Exec(ctx, `select pg_advisory_unlock(7531)`) }()
	var exists bool
	if err := admin.QueryRow(ctx, `select exists (select 1 from pg_database where datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatalf("look up template: %v", err)
	}
	if exists {
		return name
	}
	building := name + "_wip"
	_, _ = admin.Exec(ctx, "drop database if exists "+building+" with (force)")
	if _, err := admin.Exec(ctx, "create database "+building); err != nil {
		t.Fatalf("create template: %v", err)
	}
	prepare(t, admin, building, flavor)
	st, err := store.Open(ctx, migrator(t, urlFor(t, building), flavor), store.Options{MaxConns: 2})
	if err != nil {
		t.Fatalf("open template: %v", err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		st.Close()
		t.Fatalf("migrate template: %v", err)
	}
	st.Close()
	if _, err := admin.Exec(ctx, fmt.Sprintf("alter database %s rename to %s", building, name)); err != nil {
		t.Fatalf("rename template: %v", err)
	}
	return name
}

// templateHash changes whenever what a template holds would change: the flavor's fixtures, the
// migrations, and the privilege step Migrate runs after them.
func templateHash(t testing.TB, flavor Flavor) string {
	h := sha256.New()
	// Migrate sets privileges after the migrations' SQL: its code is part of what a template holds.
	for _, f := range []string{"migrate.go", "privileges.go"} {
		h.Write([]byte(f))
		h.Write([]byte(storeSource(t, f)))
	}
	switch flavor {
	case Supabase:
		h.Write([]byte(Testdata(t, "supabase-auth.sql")))
	case SupabaseProject:
		for _, f := range []string{"supabase-auth.sql", "supabase-postgres-role.sql", "supabase-defaults.sql"} {
			h.Write([]byte(f))
			h.Write([]byte(Testdata(t, f)))
		}
	}
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		t.Fatalf("hash migrations: %v", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}
