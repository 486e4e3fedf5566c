package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"sigs.k8s.io/yaml"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

// grantLines are the statements of a SQL file, comments dropped.
func grantLines(t *testing.T, sql string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(sql, "\n") {
		stmt, _, _ := strings.Cut(line, "--")
		if stmt = strings.TrimSpace(stmt); strings.HasPrefix(stmt, "grant ") {
			out = append(out, stmt)
		}
	}
	return out
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The example DATABASE_URLs log in as the dedicated role docs/supabase.md documents, with
// its grants.
func TestDeployUsesTheDocumentedRole(t *testing.T) {
	docs := readFile(t, "../docs/supabase.md")
	if !strings.Contains(docs, "create role usage_sync login") {
		t.Fatal("docs/supabase.md no longer creates role usage_sync: update deploy/ and this test together")
	}
	k8s := readFile(t, "kubernetes.yaml")
	if !strings.Contains(k8s, "DATABASE_URL='postgres://usage_sync:") || !strings.Contains(k8s, "docs/supabase.md") {
		t.Error("kubernetes.yaml's example DATABASE_URL should log in as usage_sync and point at docs/supabase.md for its grants")
	}

	roles := readFile(t, "compose-roles.sql")
	if !strings.Contains(roles, "create role usage_sync login") {
		t.Error("compose-roles.sql should create role usage_sync")
	}
	for _, g := range grantLines(t, roles) {
		if !strings.Contains(docs, g) {
			t.Errorf("compose-roles.sql grants %q, which docs/supabase.md does not list", g)
		}
	}
	var c composeFile
	if err := yaml.UnmarshalStrict([]byte(readFile(t, "compose.yaml")), &c); err != nil {
		t.Fatal(err)
	}
	if v := strings.Join(c.Services["db"].Volumes, " "); !strings.Contains(v, "./compose-roles.sql:/docker-entrypoint-initdb.d/") {
		t.Errorf("the db service should run compose-roles.sql at its first start: volumes %v", v)
	}
	for _, svc := range []string{"migrate", "usage-sync"} {
		if u := c.Services[svc].Environment["DATABASE_URL"]; !strings.HasPrefix(u, "postgres://usage_sync:") {
			t.Errorf("%s logs in with %s, want the dedicated role usage_sync", svc, u)
		}
	}
}

// compose's role, with exactly compose-roles.sql's grants, migrates a plain PostgreSQL twice,
// and the seed (as the superuser) then applies.
func TestComposeRoleMigrates(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "usagesync_r_" + hex.EncodeToString(b)
	t.Cleanup(func() { pgtest.Exec(t, pgtest.BaseURL(), "drop role if exists "+role) })
	sql := regexp.MustCompile(`\busage_sync\b`).ReplaceAllString(readFile(t, "compose-roles.sql"), role)
	pgtest.Exec(t, dsn, strings.ReplaceAll(sql, "on database postgres", "on database "+cfg.Database))
	// Registered after the database's cleanup, so it runs before it: the role's objects go first.
	t.Cleanup(func() { pgtest.Exec(t, dsn, "drop owned by "+role+" cascade") })

	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.AsRole(t, dsn, role), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 2; i++ {
		if _, err := st.Migrate(ctx); err != nil {
			t.Fatalf("migrate #%d as compose's role: %v", i+1, err)
		}
	}
	pgtest.Exec(t, dsn, readFile(t, "compose-seed.sql"))
}
