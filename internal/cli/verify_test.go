package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

func TestVerifyCommand(t *testing.T) {
	t.Parallel()
	const a, b = "66666666-0000-4000-8000-000000000001", "66666666-0000-4000-8000-000000000002"
	dsn, sim, getenv, d := corrections(t, a, b)

	// Converged: nothing differs, and verify writes no row anywhere.
	before, _ := pgtest.TableWrites(t, dsn)
	r := run(t, getenv, "verify")
	if r.code != 0 || !strings.Contains(r.stdout, "total: 2 users checked, 0 with differences") {
		t.Fatalf("verify after convergence: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	after, _ := pgtest.TableWrites(t, dsn)
	for table, n := range after {
		if n != before[table] {
			t.Errorf("verify wrote %d rows to %s", n-before[table], table)
		}
	}

	// A mirror row changed behind the worker's back: the dashboard's copy, not the record billing
	// reads.
	pgtest.Exec(t, dsn, `update api_keys set total_requests = total_requests + 5 where user_id = '`+b+`'`)
	r = run(t, getenv, "verify")
	if r.code != ExitUsersFailed || !strings.Contains(r.stdout, b+"  status ok: mirror_altered api_keys "+keyOf(b)+": record 10, mirror 15") ||
		strings.Contains(r.stdout, a) || !strings.Contains(r.stdout, "Restoring the mirror") {
		t.Fatalf("verify with a changed api_keys row: exit %d\n%s", r.code, r.stdout)
	}
	// docs/operations.md, "Restoring the mirror": the api_keys statement, for user b.
	pgtest.Exec(t, dsn, `update public.api_keys m
	   set user_id = k.user_id, name = k.name, purpose = k.purpose, integration = k.integration,
	       is_active = k.is_active, created_at = k.created_at, last_used_at = k.last_used_at,
	       total_requests = k.total_requests, revoked_at = k.revoked_at, synced_at = now()
	  from usage_sync.keys k
	 where m.id = k.key_id and k.user_id = '`+b+`'`)
	if r := run(t, getenv, "verify", "--user", b); r.code != 0 {
		t.Fatalf("verify after restoring the mirror: exit %d\n%s", r.code, r.stdout)
	}
	if r := run(t, getenv, "verify", "--user", a, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"differences": []`) {
		t.Fatalf("verify --user of a clean user: exit %d\n%s", r.code, r.stdout)
	}

	// An upstream total the ledger cannot explain: the vendor added 7 requests to a settled day.
	for i := range 7 {
		sim.AddRequests(a, keyOf(a), d.Add(4*time.Hour+time.Duration(i)*time.Second))
	}
	if r := run(t, getenv, "--once", "--user", a); r.code != 0 {
		t.Fatalf("--once: exit %d", r.code)
	}
	r = run(t, getenv, "verify", "--user", a, "--json")
	var rep syncer.VerifyReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	kinds := map[string]syncer.Difference{}
	if len(rep.Users) == 1 {
		for _, x := range rep.Users[0].Differences {
			kinds[x.Kind] = x
		}
	}
	if r.code != ExitUsersFailed || rep.WithDifferences != 1 || rep.Users[0].UserID != a ||
		kinds[syncer.DiffUndercharged].Upstream-kinds[syncer.DiffUndercharged].Ours != 7 || kinds[syncer.DiffSettledUsage].Upstream == 0 ||
		!strings.HasPrefix(kinds[syncer.DiffUndercharged].Fix, "usage-sync resync --user "+a) {
		t.Fatalf("verify of an upstream correction: exit %d\n%s", r.code, r.stdout)
	}
	// resync is the fix: afterwards the user verifies clean.
	if r := run(t, getenv, "resync", "--user", a); r.code != 0 {
		t.Fatalf("resync: exit %d\n%s", r.code, r.stderr)
	}
	if r := run(t, getenv, "verify", "--user", a); r.code != 0 {
		t.Fatalf("verify after resync: exit %d\n%s", r.code, r.stdout)
	}
	// A user the upstream refuses is named as unreadable; the others are still verified.
	sim.SetFault(b, simulator.Fault{Status: 401})
	r = run(t, getenv, "verify")
	if r.code != ExitUsersFailed || !strings.Contains(r.stdout, b+"  unreadable: ") ||
		!strings.Contains(r.stdout, "total: 2 users checked, 0 with differences (0 differences), 1 unreadable") {
		t.Fatalf("verify with a refused user: exit %d\n%s", r.code, r.stdout)
	}
	sim.ClearFault(b)
	if r := run(t, getenv, "verify", "--user", "66666666-0000-4000-8000-00000000ffff"); r.code != ExitUsage {
		t.Fatalf("verify of an unknown user: exit %d", r.code)
	}
	if r := run(t, env(closedDB), "verify"); r.code != ExitRuntime {
		t.Fatalf("verify with the database down: exit %d, want %d", r.code, ExitRuntime)
	}
}

// A difference that is a count of rows reads as one, not as "record 0, mirror 3".
func TestPrintVerifyRowCount(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	rep := syncer.VerifyReport{Checked: 1, WithDifferences: 1, Users: []syncer.VerifyUser{{UserID: "u", Status: "ok",
		Differences: []syncer.Difference{{Kind: syncer.DiffMirrorAltered, Subject: "api_usage per-key rows", Rows: 3, Fix: "restore"}}}}}
	if err := printVerify(&b, rep); err != nil {
		t.Fatal(err)
	}
	if want := "u  status ok: mirror_altered api_usage per-key rows: 3 differ from the record (fix: restore)\n"; !strings.HasPrefix(b.String(), want) {
		t.Errorf("got %q, want it to start with %q", b.String(), want)
	}
}
