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
	// Yesterday had no data, so the report starts today.
	if len(lines) != 4 {
		t.Fatalf("want header, today, total and balance; got:\n%s", r.stdout)
	}
	// today: 12 by key, 15 by purpose, 3 unattributed, 12 charged, 10 debited, 2 short.
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != today+" 12 15 3 0 12 10 2 0" {
		t.Fatalf("today's row = %q", lines[1])
	}
	if lines[3] != "credits_remaining 0" {
		t.Fatalf("balance line = %q", lines[3])
	}
	// The whole configuration is not dumped at info level by a read-only command.
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, `"config.loaded"`) && !strings.Contains(l, `"level":"debug"`) {
			t.Fatalf("report logged its configuration above debug:\n%s", l)
		}
	}
	// An id the dashboard does not know is a usage error, as for --once --user.
	unknown := run(t, env(dsn), "report", "--user", "33333333-0000-4000-8000-00000000ffff")
	if unknown.code != ExitUsage || !strings.Contains(unknown.stderr, "not in profiles") {
		t.Fatalf("report for an unknown user: exit %d, stderr %s", unknown.code, unknown.stderr)
	}
	if bad := run(t, env(dsn), "report", "--user", "nope"); bad.code != ExitUsage {
		t.Fatalf("report with a bad --user exited %d, want %d", bad.code, ExitUsage)
	}
}
