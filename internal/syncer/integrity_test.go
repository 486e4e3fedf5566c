package syncer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/hostile"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// integrityStart is where the integrity tests' clock starts: midday, so requests of the last
// hours fall in today and "settle today" is a known step.
var integrityStart = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// requests returns n instants in the second before now, for AddRequests.
func requests(now time.Time, n int) []time.Time {
	at := make([]time.Time, n)
	for i := range at {
		at[i] = now.Add(-time.Second + time.Duration(i)*time.Microsecond)
	}
	return at
}

// finishedTask is a finished task of n emails, all valid, created at created.
func finishedTask(id string, created time.Time, n int) simulator.Task {
	fin := created.Add(time.Minute)
	return simulator.Task{ID: id, CreatedAt: created, Emails: n, Done: n, Finished: true, FinishedAt: &fin,
		Results: map[string]int64{"valid": int64(n)}}
}

// charged is the Σ amount of a user's real ledger rows of the given sources.
func (e *env) charged(user string, sources ...string) int64 {
	e.t.Helper()
	return e.q(`select coalesce(sum(amount), 0) from credit_ledger where user_id = $1 and source = any($2)`, user, sources)
}

// asUser runs sql in one transaction the way PostgREST runs a signed-in user's request: the
// authenticated role, the user's id in request.jwt.claims (what auth.uid() reads).
func (e *env) asUser(user, sql string) error {
	e.t.Helper()
	ctx := context.Background()
	return pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `set local role authenticated`); err != nil {
			return err
		}
		claims := fmt.Sprintf(`{"sub": %q, "role": "authenticated"}`, user)
		if _, err := tx.Exec(ctx, `select set_config('request.jwt.claims', $1, true)`, claims); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
}

// Finding 1: a dashboard that lets signed-in users insert and update their own rows of
// api_usage and tasks (a plausible proxy log and task history). The attacker writes every
// imitation of the worker's rows it can: a huge origin='usage-sync' day on an old day for its
// own key (the guard's settled totals), a task created in 2999 (the task watermark), and rows
// naming the control user's key and next task id (the ownership checks). It is then charged
// exactly its real usage, like the control, whose sync and charges the rows do not touch.
func TestPoisonedDashboardChangesNoCharge(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 131, Users: 2, KeysPerUser: -1, TasksPerUser: -1},
		flavor: pgtest.Supabase, start: integrityStart})
	atk, ctl := e.sim.Users()[0], e.sim.Users()[1]
	now := e.clock.Now()
	for _, u := range []string{atk, ctl} {
		e.sim.AddKey(u, simulator.Key{ID: "key-" + u[:8], Purpose: "zapier", CreatedAt: now.Add(-48 * time.Hour)})
		e.sim.AddRequests(u, "key-"+u[:8], requests(now.Add(-30*time.Hour), 10)...)
		// Finished before the revision window: the watermark rests on the newest task seen.
		e.sim.AddTask(u, finishedTask("task-"+u[:8], now.Add(-30*time.Hour), 5))
	}
	// The dashboard's own-row policies, as a project might write them.
	pgtest.Exec(t, e.dsn, `
		grant insert, update on public.api_usage, public.tasks to authenticated;
		create policy own_insert on public.api_usage for insert to authenticated with check (user_id = auth.uid());
		create policy own_update on public.api_usage for update to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());
		create policy own_insert on public.tasks for insert to authenticated with check (user_id = auth.uid());
		create policy own_update on public.tasks for update to authenticated using (user_id = auth.uid()) with check (user_id = auth.uid());`)
	s := e.syncer()
	if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() {
		t.Fatalf("first cycle: %+v", sum)
	}
	before := map[string]int64{atk: e.charged(atk, "key_requests", "task"), ctl: e.charged(ctl, "key_requests", "task")}

	atkKey, ctlKey := "key-"+atk[:8], "key-"+ctl[:8]
	old := now.AddDate(0, 0, -20).Truncate(24 * time.Hour).Format(time.RFC3339)
	other := now.AddDate(0, 0, -25).Truncate(24 * time.Hour).Format(time.RFC3339)
	ctlNext := "task-next-" + ctl[:8]
	if err := e.asUser(atk, `
		insert into api_usage (user_id, api_key_id, purpose, count, period_start, period_end, origin)
		values ('`+atk+`', '`+atkKey+`', 'zapier', 2000000000, '`+old+`', '`+old+`'::timestamptz + interval '1 day', 'usage-sync'),
		       ('`+atk+`', '`+ctlKey+`', 'zapier', 7, '`+other+`', '`+other+`'::timestamptz + interval '1 day', 'usage-sync');
		insert into tasks (task_id, user_id, status, email_count, created_at, updated_at)
		values ('task-2999-`+atk[:8]+`', '`+atk+`', 'completed', 1, '2999-01-01', '2999-01-01'),
		       ('`+ctlNext+`', '`+atk+`', 'completed', 0, now(), now());`); err != nil {
		t.Fatalf("the attacker's rows: %v", err)
	}

	// A cycle over the tampered tables (it would record a watermark in 2999), then real usage:
	// 150 requests and a 20-email task each.
	e.clock.Add(time.Hour)
	if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() {
		t.Errorf("cycle over the tampered tables: %+v", sum)
	}
	e.clock.Add(time.Hour)
	now = e.clock.Now()
	e.sim.AddRequests(atk, atkKey, requests(now, 150)...)
	e.sim.AddRequests(ctl, ctlKey, requests(now, 150)...)
	e.sim.AddTask(atk, finishedTask("task-next-"+atk[:8], now.Add(-10*time.Minute), 20))
	e.sim.AddTask(ctl, finishedTask(ctlNext, now.Add(-10*time.Minute), 20))
	if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() {
		t.Errorf("cycle after the tampering: %+v", sum)
	}
	for _, u := range []string{atk, ctl} {
		if got := e.charged(u, "key_requests", "task") - before[u]; got != 170 {
			t.Errorf("user %s: charged %d after the tampering, want its real 150 requests + 20 emails", u, got)
		}
		if st := e.syncState(u); st.Status != "ok" {
			t.Errorf("user %s: status %s (%v), want ok", u, st.Status, st.LastError)
		}
	}
	// The mirror row the attacker planted under the control's next task id is the control's now.
	if n := e.q(`select count(*) from tasks where task_id = $1 and user_id = $2 and email_count = 20`, ctlNext, ctl); n != 1 {
		t.Error("the planted tasks row was not rewritten as the control's task")
	}
	e.checkInvariants(true)
}

// Finding 2: a key created, used 300 times and revoked between two syncs never shows up in
// /api-keys; the per-purpose totals count it, and once the day settles its 300 requests are
// charged as unlisted_requests, exactly once however often the day is read again.
func TestRevokedBetweenSyncsIsChargedAsUnlisted(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 132, Users: 1, KeysPerUser: -1, TasksPerUser: -1}, start: integrityStart})
	u := e.sim.Users()[0]
	now := e.clock.Now()
	e.sim.AddKey(u, simulator.Key{ID: "kept", Purpose: "zapier", CreatedAt: now.Add(-time.Hour)})
	e.sim.AddRequests(u, "kept", requests(now, 4)...)
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{All: true})
	e.clock.Add(time.Minute)
	e.sim.AddKey(u, simulator.Key{ID: "burner", Purpose: "zapier", CreatedAt: e.clock.Now().Add(-30 * time.Second)})
	e.sim.AddRequests(u, "burner", requests(e.clock.Now(), 300)...)
	e.sim.RevokeKey(u, "burner")
	e.sim.AddRequests(u, "kept", requests(e.clock.Now(), 6)...)
	e.cycle(s, syncer.CycleOptions{All: true})
	e.settleToday()
	for range 2 {
		if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() {
			t.Fatalf("cycle: %+v", sum)
		}
	}
	if got := e.charged(u, "unlisted_requests"); got != 300 {
		t.Fatalf("unlisted_requests charged %d, want the revoked key's 300", got)
	}
	if got := e.charged(u, "key_requests"); got != 10 {
		t.Fatalf("key_requests charged %d, want the listed key's 10", got)
	}
	if n := e.q(`select count(*) from credit_ledger where source = 'unlisted_requests' and subject = $1 and source_id = $2`,
		"zapier/2026-03-10", "zapier/2026-03-10/310"); n != 1 {
		t.Fatal("the unlisted row is not keyed by the purpose, the day and the total it observed")
	}
	rows, err := e.st.Report(context.Background(), u, day(integrityStart), day(integrityStart).AddDate(0, 0, 1))
	if err != nil || len(rows) != 1 || rows[0].Unlisted != 300 {
		t.Fatalf("report %+v %v; want 300 charged as unlisted", rows, err)
	}
	e.checkInvariants(true)
	e.checkRequestsCharged()
}

// A per-purpose total below what its keys were charged for the day is inconsistent data:
// nothing is charged as unlisted for it, and it shows in blocked_keys and the status.
func TestPurposeTotalBelowKeyChargesIsInconsistent(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 133, Users: 1, KeysPerUser: -1, TasksPerUser: -1}, start: integrityStart})
	u := e.sim.Users()[0]
	h := hostile.New(e.sim.Handler())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.base = srv.URL + "/api/v1"
	e.sim.AddKey(u, simulator.Key{ID: "k", Purpose: "n8n", CreatedAt: e.clock.Now().Add(-time.Hour)})
	e.sim.AddRequests(u, "k", requests(e.clock.Now(), 9)...)
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{All: true})
	e.settleToday()
	h.On(func(r *http.Request) (hostile.Reply, bool) {
		if !hostile.For(u, "/metrics/api-usage")(r) || !strings.HasPrefix(r.URL.Query().Get("from"), "2026-03-10") {
			return hostile.Reply{}, false
		}
		return hostile.Reply{Body: jsonBody(t, map[string]any{"user_id": u, "total_requests": 2,
			"requests_by_purpose": map[string]int64{"n8n": 2}})}, true
	})
	e.cycle(s, syncer.CycleOptions{All: true})
	if got := e.charged(u, "unlisted_requests"); got != 0 {
		t.Fatalf("charged %d as unlisted from an inconsistent total", got)
	}
	if st := e.syncState(u); st.Status != "degraded" || st.LastError == nil || !strings.Contains(*st.LastError, "unlisted/n8n/2026-03-10") {
		t.Fatalf("sync_state %+v; want degraded naming the purpose and day", st)
	}
	if n := e.q(`select count(*) from sync_state where user_id = $1 and blocked_keys ? 'unlisted/n8n/2026-03-10'`, u); n != 1 {
		t.Fatal("the inconsistent purpose-day is not in blocked_keys")
	}
	if len(e.events("charge.unlisted_inconsistent")) != 1 {
		t.Fatal("no charge.unlisted_inconsistent log line")
	}
	e.checkInvariants(false)
}

// Finding 3: with CHARGE_FROM empty, a shadow trial observes 80 requests and a 30-email task;
// the first live cycle charges neither (the user goes live at that take), only what follows.
func TestGoingLiveNeverChargesTheTrial(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 134, Users: 1, KeysPerUser: -1, TasksPerUser: -1},
		start: integrityStart, shadow: true, noChargeFrom: true})
	u := e.sim.Users()[0]
	now := e.clock.Now()
	e.sim.AddKey(u, simulator.Key{ID: "k", Purpose: "custom", CreatedAt: now.Add(-time.Hour)})
	shadow := e.syncer()
	e.cycle(shadow, syncer.CycleOptions{All: true}) // enrols the user: the trial starts
	e.clock.Add(time.Minute)
	e.sim.AddRequests(u, "k", requests(e.clock.Now(), 80)...)
	e.sim.AddTask(u, finishedTask("trial", e.clock.Now().Add(-30*time.Second), 30))
	e.cycle(shadow, syncer.CycleOptions{All: true})
	if got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where source like 'shadow:%'`); got != 110 {
		t.Fatalf("the trial observed %d, want 80 requests + 30 emails as shadow rows", got)
	}
	if n := e.q(`select count(*) from usage_sync.go_live`); n != 0 {
		t.Fatal("a shadow worker recorded a go-live")
	}

	e.clock.Add(time.Minute)
	live := e.syncer(func(o *syncer.Options) { o.ChargeEnabled = true })
	e.cycle(live, syncer.CycleOptions{All: true})
	if got := e.charged(u, "key_requests", "task", "unlisted_requests"); got != 0 {
		t.Fatalf("the first live cycle charged %d of the trial's usage", got)
	}
	if n := e.q(`select count(*) from usage_sync.go_live where user_id = $1 and live_at = $2`, u, e.clock.Now()); n != 1 {
		t.Fatal("the go-live is not the first live take")
	}
	e.clock.Add(time.Minute)
	e.sim.AddRequests(u, "k", requests(e.clock.Now(), 7)...)
	e.sim.AddTask(u, finishedTask("live", e.clock.Now().Add(-30*time.Second), 4))
	e.cycle(live, syncer.CycleOptions{All: true})
	e.settleToday() // the go-live day settles: its remainder is read for [go-live, day end)
	e.cycle(live, syncer.CycleOptions{All: true})
	if got := e.charged(u, "key_requests", "task", "unlisted_requests"); got != 11 {
		t.Fatalf("charged %d after going live, want the 7 requests + 4 emails since", got)
	}
	e.checkInvariants(true)
	e.checkRequestsCharged()
}

// Migration 0008 carries a deployment's state over from what the worker wrote before it (the
// mirror's worker rows, the ledger): a database synced at the previous schema, migrated, then a
// cycle, adds no ledger row and lists no task from before the stored watermark less the usual
// overlap. A watermark an imitation row had pushed into 2999 is derived again from the tasks
// carried, which leave the imitation out. CHARGE_FROM is empty, so the go-live carries over too.
func TestMigrationCarriesTheBookkeepingOver(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 135, Users: 3, KeysPerUser: 2, TasksPerUser: 6, HistoryDays: 2},
		noChargeFrom: true})
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{All: true})
	e.cycle(s, syncer.CycleOptions{All: true})
	users := e.sim.Users()
	poisoned := users[0]
	// The previous schema: no bookkeeping tables, 0008 (nor 0012, which extends go_live) not
	// applied; what a worker of that schema
	// left is in the mirror, the ledger and sync_state, and one user's tasks were poisoned there.
	pgtest.Exec(t, e.dsn, `
		drop table usage_sync.keys, usage_sync.key_days, usage_sync.purpose_days, usage_sync.tasks, usage_sync.go_live;
		delete from usage_sync.schema_migrations where version in (8, 12);
		insert into tasks (task_id, user_id, status, email_count, created_at, updated_at, synced_at)
		values ('imitation-2999', '`+poisoned+`', 'completed', 1, '2999-01-01', '2999-01-01', now());
		update sync_state set task_watermark = '2999-01-01', task_watermark_open = '2999-01-01' where user_id = '`+poisoned+`';`)
	watermarks := map[string]time.Time{}
	for _, u := range users[1:] {
		var wm time.Time
		if err := e.db.QueryRow(context.Background(), `select least(task_watermark, task_watermark_open) from sync_state where user_id = $1`, u).Scan(&wm); err != nil {
			t.Fatal(err)
		}
		watermarks[u] = wm
	}
	ledger := e.q(`select count(*) from credit_ledger`)
	if _, err := e.st.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if n := e.q(`select count(*) from usage_sync.go_live g join sync_state s using (user_id) where g.live_at = s.enrolled_at`); n != int64(len(users)) {
		t.Fatalf("%d users kept their go-live at enrolment, want all %d (they were charged live)", n, len(users))
	}
	if n := e.q(`select count(*) from usage_sync.go_live g join sync_state s using (user_id) where g.settled_through is not distinct from s.settled_through`); n != int64(len(users)) {
		t.Fatalf("%d users kept their settled mark as the live one, want all %d (migration 0012)", n, len(users))
	}
	if n := e.q(`select count(*) from usage_sync.tasks t where charged_live <> exists (select 1 from credit_ledger l
		where l.user_id = t.user_id and l.subject = t.task_id and l.source = 'task')`); n != 0 {
		t.Fatalf("%d tasks carried over with charged_live unlike their ledger (migration 0012: a task charge means charged live)", n)
	}
	if n := e.q(`select count(*) from usage_sync.tasks where task_id = 'imitation-2999'`); n != 0 {
		t.Fatal("a task created in 2999 was carried into the worker's record")
	}
	var mu sync.Mutex
	after := map[string]time.Time{}
	e.sim.OnRequest(func(user, path string, q url.Values) {
		if !strings.HasSuffix(path, "/tasks") || q.Get("created_after") == "" {
			return
		}
		at, err := time.Parse(time.RFC3339Nano, q.Get("created_after"))
		if err != nil {
			t.Errorf("created_after %q: %v", q.Get("created_after"), err)
		}
		mu.Lock()
		defer mu.Unlock()
		if old, ok := after[user]; !ok || at.Before(old) {
			after[user] = at
		}
	})
	if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() || sum.Synced != len(users) {
		t.Fatalf("cycle after the migration: %+v", sum)
	}
	if added := e.q(`select count(*) from credit_ledger`) - ledger; added != 0 {
		t.Fatalf("the first cycle after the migration added %d ledger rows: a day or task charged again", added)
	}
	mu.Lock()
	defer mu.Unlock()
	for u, wm := range watermarks {
		if got, ok := after[u]; !ok || got.Before(wm.Add(-syncer.TaskOverlapDefault)) {
			t.Errorf("user %s: tasks listed from %v, want no earlier than the stored watermark %v less the overlap", u, got, wm)
		}
	}
	if got, ok := after[poisoned]; !ok || got.Year() >= 2999 {
		t.Errorf("the poisoned user's tasks are listed from %v: its watermark was not derived again", got)
	}
	e.checkInvariants(true)
}
