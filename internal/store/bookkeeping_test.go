package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/store"
)

// unlisted_requests charges what a (purpose, day)'s total exceeds the purpose's key_requests
// rows of the day (its keys as the worker recorded them) and its earlier remainders; a replay
// posts nothing; a total below what was charged is reported, never charged; shadow rows count
// only against shadow rows.
func TestUnlistedChargesTheRemainderOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users := setup(t, 100)
	u := users[0]
	day := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	if _, err := db.Exec(ctx, `
		insert into usage_sync.key_days (key_id, day, user_id, purpose, count) values
		  ('k1', $2, $1, 'zapier', 10), ('k2', $2, $1, 'n8n', 50)`, u, day); err != nil {
		t.Fatal(err)
	}
	key := func(id string, n int64) store.Charge {
		return store.Charge{UserID: u, Family: store.FamilyKey, Subject: id + "/2026-03-10", Total: n, Meta: map[string]any{"key_id": id}}
	}
	unlisted := func(n int64) store.Charge {
		return store.Charge{UserID: u, Family: store.FamilyUnlisted, Subject: store.UnlistedSubject("zapier", day), Total: n}
	}
	for _, shadow := range []bool{true, false} {
		if _, err := st.Charge(ctx, []store.Charge{key("k1", 10), key("k2", 50)}, shadow); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		total, posted int64
		down          bool
	}{{15, 5, false}, {15, 0, false}, {17, 2, false}, {12, 0, true}}
	for _, s := range steps {
		res, err := st.Charge(ctx, []store.Charge{unlisted(s.total)}, false)
		if err != nil {
			t.Fatal(err)
		}
		if res.Amount != s.posted || (len(res.Revisions) == 1) != s.down {
			t.Fatalf("zapier total %d: posted %d, revisions %+v; want %d posted, down %v", s.total, res.Amount, res.Revisions, s.posted, s.down)
		}
		if s.down && (res.Revisions[0].Family != store.FamilyUnlisted || res.Revisions[0].Charged != 17) {
			t.Fatalf("revision %+v; want unlisted_requests below the 17 charged", res.Revisions[0])
		}
	}
	if got := sums(t, db, u, "unlisted_requests"); got.amount != 7 || got.rows != 2 {
		t.Fatalf("unlisted_requests rows %+v; want 2 rows, 7 credits", got)
	}
	// The shadow remainder reads the shadow key rows, never the real ones.
	res, err := st.Charge(ctx, []store.Charge{unlisted(12)}, true)
	if err != nil || res.Amount != 2 || res.Posted[0].Source != "shadow:unlisted_requests" || res.Posted[0].SourceID != "zapier/2026-03-10/12" {
		t.Fatalf("shadow remainder %+v %v; want shadow:unlisted_requests zapier/2026-03-10/12 amount 2", res, err)
	}
	if b := balance(t, db, u); b != 100-60-7 {
		t.Fatalf("balance %d, want %d", b, 100-60-7)
	}
}

// The mirror is written from the worker's record: a mirror row someone altered is not what the
// next write compares against, it is rewritten (owner included) when the record's data changes,
// and a row the dashboard planted under an id the worker has not recorded yet is taken over.
func TestMirrorIsRewrittenFromTheRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users, req, _ := claimedByA(t)
	u, other := users[0], "22222222-0000-4000-8000-0000000000ff"
	day := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	for _, q := range []string{
		`insert into tasks (task_id, user_id, status, email_count, created_at, updated_at) values ('t1', $2, 'completed', 0, '2999-01-01', $1::timestamptz)`,
		`insert into api_usage (user_id, api_key_id, count, period_start, period_end, origin) values ($2, 'k1', 999, $1, $1::timestamptz + interval '1 day', 'usage-sync')`,
	} {
		if _, err := db.Exec(ctx, q, day, other); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(count int64) store.Applied {
		t.Helper()
		if _, err := db.Exec(ctx, `update sync_state set lease_owner = null, lease_expires_at = null`); err != nil {
			t.Fatal(err)
		}
		l, err := st.Claim(ctx, req("a"))
		if err != nil || l == nil {
			t.Fatalf("claim: %v %v", l, err)
		}
		res, err := st.Apply(ctx, l, &store.Plan{RunID: "a",
			Keys:  []store.KeyRow{{ID: "k1", Purpose: "zapier", IsActive: true, TotalRequests: &count}},
			Usage: []store.UsageRow{{KeyID: "k1", Purpose: "zapier", Day: day, Count: count}},
			Tasks: []store.TaskRow{{ID: "t1", Status: "processing", Emails: count, CreatedAt: day}}})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return res
	}
	mirror := func() (usageOwner string, usage int64, taskOwner string, emails int64) {
		t.Helper()
		if err := db.QueryRow(ctx, `
			select u.user_id::text, u.count, t.user_id::text, t.email_count
			from api_usage u, tasks t where u.api_key_id = 'k1' and u.origin = 'usage-sync' and t.task_id = 't1'`).
			Scan(&usageOwner, &usage, &taskOwner, &emails); err != nil {
			t.Fatal(err)
		}
		return
	}
	if res := apply(5); res.UsageWritten != 1 || res.TasksWritten != 1 || res.Status != "ok" {
		t.Fatalf("first apply %+v; want the planted rows taken over, no conflict", res)
	}
	if uo, n, to, e := mirror(); uo != u || n != 5 || to != u || e != 5 {
		t.Fatalf("mirror %s %d %s %d; want both rows the user's, with 5", uo, n, to, e)
	}
	// Altered in the mirror while the data stays the same: the record says nothing changed.
	for _, q := range []string{`update api_usage set count = 0 where api_key_id = 'k1'`, `update tasks set email_count = 0 where task_id = 't1'`} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if res := apply(5); res.UsageWritten != 0 || res.TasksWritten != 0 {
		t.Fatalf("unchanged data wrote %+v", res)
	}
	var settled int64
	if err := db.QueryRow(ctx, `select count from usage_sync.key_days where key_id = 'k1'`).Scan(&settled); err != nil || settled != 5 {
		t.Fatalf("the record holds %d (%v), want 5", settled, err)
	}
	// The data changes: the mirror row is rewritten whole.
	if res := apply(6); res.UsageWritten != 1 || res.TasksWritten != 1 {
		t.Fatalf("changed data wrote %+v", res)
	}
	if _, n, _, e := mirror(); n != 6 || e != 6 {
		t.Fatalf("mirror %d %d after the data changed, want 6", n, e)
	}
}
