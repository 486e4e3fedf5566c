package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/pgtest"
)

func TestReport(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	const u = "33333333-0000-4000-8000-000000000001"
	today := time.Now().UTC().Format(time.DateOnly)
	// The ledger row is what charging k1's 12 requests of today against a balance of 10 leaves
	// (12 charged, 10 debited, 0 credits after): the report only reads it, so it is written here
	// as a row rather than by a charge (the charging itself is tested in the store and syncer).
	pgtest.Exec(t, dsn, `
		insert into profiles (user_id) values ('`+u+`');
		insert into user_credits (user_id, credits_remaining) values ('`+u+`', 0);
		insert into usage_sync.key_days (user_id, key_id, purpose, count, day) values
		  ('`+u+`', 'k1', 'zapier', 12, '`+today+` 00:00Z');
		insert into usage_sync.purpose_days (user_id, purpose, count, day) values
		  ('`+u+`', 'zapier', 15, '`+today+` 00:00Z');
		-- The mirror is not what the report reads: a row someone wrote there changes nothing.
		insert into api_usage (user_id, api_key_id, purpose, count, period_start, period_end, origin) values
		  ('`+u+`', 'k1', 'zapier', 99999, '`+today+`', '`+today+`'::date + 1, 'usage-sync');
		insert into credit_ledger (user_id, source, source_id, subject, amount, debited, credits_after, meta) values
		  ('`+u+`', 'key_requests', 'k1/`+today+`/12', 'k1/`+today+`', 12, 10, 0, '{"key_id": "k1", "day": "`+today+`"}'),
		  ('`+u+`', 'unlisted_requests', 'zapier/`+today+`/15', 'zapier/`+today+`', 3, 0, 0, '{"purpose": "zapier", "day": "`+today+`"}');`)
	r := run(t, env(dsn), "report", "--user", u, "--days", "2")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	// Yesterday had no data, so the report starts today.
	if len(lines) != 4 {
		t.Fatalf("want header, today, total and balance; got:\n%s", r.stdout)
	}
	// today: 12 by key, 15 by purpose, 3 charged as unlisted, 15 charged, 10 debited, 5 short.
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != today+" 12 15 3 0 15 10 5 0" {
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
