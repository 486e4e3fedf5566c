package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

func TestReport(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	const u = "33333333-0000-4000-8000-000000000001"
	today := time.Now().UTC().Format(time.DateOnly)
	pgtest.Exec(t, dsn, `
		insert into profiles (user_id) values ('`+u+`');
		insert into user_credits (user_id, credits_remaining) values ('`+u+`', 10);
		insert into api_usage (user_id, api_key_id, purpose, count, period_start, period_end, origin) values
		  ('`+u+`', 'k1', 'zapier', 12, '`+today+`', '`+today+`'::date + 1, 'usage-sync'),
		  ('`+u+`', null, 'zapier', 15, '`+today+`', '`+today+`'::date + 1, 'usage-sync');`)
	st, err := store.Open(context.Background(), dsn, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Charge(context.Background(), []store.Charge{{UserID: u, Family: store.FamilyKey, Subject: "k1/" + today, Total: 12,
		Meta: map[string]any{"key_id": "k1", "day": today}}}, false)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, env(dsn), "report", "--user", u, "--days", "2")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 {
		t.Fatalf("want header, 2 days, total and balance; got:\n%s", r.stdout)
	}
	// today: 12 by key, 15 by purpose, 3 unattributed, 12 charged, 10 debited, 2 short.
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != today+" 12 15 3 0 12 10 2 0" {
		t.Fatalf("today's row = %q", lines[2])
	}
	if lines[4] != "credits_remaining 0" {
		t.Fatalf("balance line = %q", lines[4])
	}
	if bad := run(t, env(dsn), "report", "--user", "nope"); bad.code != ExitUsage {
		t.Fatalf("report with a bad --user exited %d, want %d", bad.code, ExitUsage)
	}
}
