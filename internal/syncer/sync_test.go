package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// assertMirrors checks the database holds exactly what the simulator serves for user.
func (e *env) assertMirrors(user string) {
	e.t.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	for _, k := range e.sim.Keys(user) {
		var total *int64
		var revoked bool
		err := e.db.QueryRow(ctx, `select total_requests, revoked_at is not null from api_keys where id = $1 and user_id = $2`, k.ID, user).Scan(&total, &revoked)
		if k.Revoked {
			if err == nil && !revoked {
				e.t.Errorf("key %s is revoked upstream but not in api_keys", k.ID)
			}
			continue
		}
		if err != nil {
			e.t.Errorf("key %s of %s not mirrored: %v", k.ID, user, err)
			continue
		}
		if total == nil || *total != k.Lifetime || revoked {
			e.t.Errorf("key %s: total_requests %v revoked %v; want %d, false", k.ID, total, revoked, k.Lifetime)
		}
		for d := day(e.chargeFrom); !d.After(day(now)); d = d.AddDate(0, 0, 1) {
			want := e.sim.KeyRequests(user, k.ID, d, d.AddDate(0, 0, 1))
			got := e.q(`select coalesce((select count from api_usage where origin = 'usage-sync' and api_key_id = $1 and period_start = $2), 0)`, k.ID, d)
			if got != want {
				e.t.Errorf("key %s day %s: api_usage count %d, simulator %d", k.ID, d.Format(time.DateOnly), got, want)
			}
		}
	}
	tasks := e.sim.Tasks(user)
	if got := e.q(`select count(*) from tasks where user_id = $1`, user); got != int64(len(tasks)) {
		e.t.Errorf("user %s: %d tasks mirrored, simulator has %d", user, got, len(tasks))
	}
	for _, tk := range tasks {
		var status string
		var emails int64
		var finished bool
		err := e.db.QueryRow(ctx, `select status, email_count, finished_at is not null from tasks where task_id = $1`, tk.ID).Scan(&status, &emails, &finished)
		if err != nil {
			e.t.Errorf("task %s not mirrored: %v", tk.ID, err)
			continue
		}
		if finished != tk.Finished || emails != int64(tk.Emails) {
			e.t.Errorf("task %s: finished %v emails %d; simulator finished %v emails %d", tk.ID, finished, emails, tk.Finished, tk.Emails)
		}
		if tk.Finished != (status == "completed" || status == "failed") {
			e.t.Errorf("task %s: status %q but finished=%v", tk.ID, status, tk.Finished)
		}
	}
}

func TestCycleMirrorsTheUpstream(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 7, Users: 3, KeysPerUser: 3, TasksPerUser: 6, HistoryDays: 3}})
	sum := e.cycle(e.syncer(), syncer.CycleOptions{Trigger: "once"})
	if !sum.OK() || sum.Synced != 3 || sum.Due != 3 {
		t.Fatalf("summary %+v; want 3 users synced", sum)
	}
	for _, u := range e.sim.Users() {
		e.assertMirrors(u)
		if s := e.syncState(u); s.Status != "ok" || !s.LastSuccess || s.ConsecutiveFailures != 0 {
			t.Errorf("sync_state of %s = %+v", u, s)
		}
	}
	if len(e.events("sync.cycle.done")) != 1 || len(e.events("sync.user.done")) != 3 {
		t.Fatalf("want one sync.cycle.done and three sync.user.done log lines")
	}
	for _, ent := range e.events("sync.user.done") {
		f := ent.ContextMap()
		if f["run_id"] != sum.RunID || f["user_id"] == "" {
			t.Fatalf("sync.user.done lacks run_id/user_id: %v", f)
		}
	}
}

func TestSecondCycleOverUnchangedDataRewritesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 8, Users: 2, TasksPerUser: 8, HistoryDays: 3}})
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	// xmin changes whenever PostgreSQL writes a new version of a row, so equal xmins prove the
	// second cycle rewrote nothing, whatever the code believes it did.
	versions := func() string {
		var v string
		err := e.db.QueryRow(context.Background(), `
			select string_agg(x, ',' order by x) from (
				select 'k' || id || ':' || xmin::text as x from api_keys
				union all select 'u' || id || ':' || xmin::text from api_usage
				union all select 't' || task_id || ':' || xmin::text from tasks
				union all select 'g' || user_id || ':' || xmin::text from usage_sync.go_live
				union all select 'rk' || key_id || ':' || xmin::text from usage_sync.keys
				union all select 'rt' || task_id || ':' || xmin::text from usage_sync.tasks) s`).Scan(&v)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := versions()
	if before == "" {
		t.Fatal("the first cycle wrote nothing")
	}
	sum := e.cycle(s, syncer.CycleOptions{All: true})
	if sum.Synced != 2 {
		t.Fatalf("second cycle: %+v", sum)
	}
	if after := versions(); after != before {
		t.Fatal("the second cycle over unchanged data rewrote rows of the mirror (api_keys, api_usage, tasks) or of the record (usage_sync.keys, tasks, go_live)")
	}
}

func TestOneUsersFailureIsIsolated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		fault     simulator.Fault
		wantInErr string
		wantKind  string
	}{
		{"refused (401)", simulator.Fault{Status: 401}, "401", "auth"},
		{"broken JSON", simulator.Fault{BadJSON: true}, "JSON", "decode"},
		{"500 until the retry budget runs out", simulator.Fault{Status: 500}, "500", "retryable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{sim: simulator.Config{Seed: 9, Users: 3, HistoryDays: 1}})
			bad := e.sim.Users()[1]
			e.sim.SetFault(bad, c.fault)
			sum := e.cycle(e.syncer(), syncer.CycleOptions{})
			if sum.Failed != 1 || sum.Synced != 2 || sum.OK() {
				t.Fatalf("summary %+v; want 2 synced, 1 failed", sum)
			}
			if len(sum.Failures) != 1 || sum.Failures[0].UserID != bad || !strings.Contains(sum.Failures[0].Error, c.wantInErr) {
				t.Fatalf("failures %+v; want %s failing with %q", sum.Failures, bad, c.wantInErr)
			}
			if !strings.Contains(sum.Line(), bad) {
				t.Fatalf("summary line does not name the failed user: %s", sum.Line())
			}
			s := e.syncState(bad)
			if s.Status != "error" || s.LastError == nil || !strings.Contains(*s.LastError, c.wantInErr) || s.ConsecutiveFailures != 1 || !s.NextAttemptInFuture {
				t.Fatalf("sync_state of the failed user = %+v", s)
			}
			var kind string
			_ = e.db.QueryRow(context.Background(), `select last_error_kind from sync_state where user_id = $1`, bad).Scan(&kind)
			if kind != c.wantKind {
				t.Fatalf("last_error_kind = %q, want %q", kind, c.wantKind)
			}
			for _, u := range e.sim.Users() {
				if u != bad {
					e.assertMirrors(u)
				}
			}
			// Backing off: the next plain cycle leaves the user alone, --all takes it again.
			e.sim.ClearFault(bad)
			if sum := e.cycle(e.syncer(), syncer.CycleOptions{}); sum.Due != 2 {
				t.Fatalf("a backing-off user was retried before its next_attempt_at: %+v", sum)
			}
			if sum := e.cycle(e.syncer(), syncer.CycleOptions{UserID: bad}); sum.Synced != 1 || sum.Due != 1 {
				t.Fatalf("--user did not sync the backing-off user: %+v", sum)
			}
			if s := e.syncState(bad); s.Status != "ok" || s.ConsecutiveFailures != 0 {
				t.Fatalf("after recovery sync_state = %+v", s)
			}
			e.assertMirrors(bad)
		})
	}
}

func TestTransientErrorsAndRateLimitsAreRetried(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 10, Users: 2, HistoryDays: 1}})
	users := e.sim.Users()
	e.sim.SetFault(users[0], simulator.Fault{Status: 500, Times: 3})
	e.sim.SetFault(users[1], simulator.Fault{Status: 429, Times: 2, RetryAfter: time.Second})
	sum := e.cycle(e.syncer(), syncer.CycleOptions{})
	if !sum.OK() || sum.Synced != 2 {
		t.Fatalf("summary %+v; 500s and 429s must be retried, not fail the users", sum)
	}
	for _, u := range users {
		e.assertMirrors(u)
	}
	if len(e.events("upstream.retry")) < 5 {
		t.Fatalf("want at least 5 upstream.retry log lines, got %d", len(e.events("upstream.retry")))
	}
}

func TestManyTasksWithNewOnesAppearingMidPass(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 11, Users: 1, KeysPerUser: 1, TasksPerUser: 0, HistoryDays: 1}})
	u := e.sim.Users()[0]
	base := e.clock.Now().Add(-20 * time.Hour)
	for i := range 250 {
		e.sim.AddTask(u, simulator.Task{ID: taskID(i), CreatedAt: base.Add(time.Duration(i) * time.Minute), Emails: 4, Done: 4, Finished: true,
			Results: map[string]int64{"valid": 3, "invalid": 1}})
	}
	added := 0
	e.sim.OnRequest(func(user, path string, q url.Values) {
		if strings.HasSuffix(path, "/tasks") && added < 30 {
			// A task created while the pass pages: it is newer than the pass's created_before.
			e.clock.Add(time.Second)
			e.sim.AddTask(u, simulator.Task{ID: taskID(1000 + added), CreatedAt: e.clock.Now(), Emails: 2, Done: 2, Finished: true,
				Results: map[string]int64{"valid": 2}})
			added++
		}
	})
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	if got := e.q(`select count(*) from tasks where user_id = $1 and task_id like 't0%'`, u); got != 250 {
		t.Fatalf("first pass mirrored %d of the 250 tasks that existed when it started", got)
	}
	e.clock.Add(time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	e.sim.OnRequest(nil)
	e.clock.Add(time.Minute)
	e.cycle(s, syncer.CycleOptions{All: true})
	e.assertMirrors(u)
	e.checkInvariants(true)
}

func taskID(i int) string { return fmt.Sprintf("t%04d", i) }

// Without an admin token the worker mints a short-lived Supabase JWT per user; neither the token
// nor the secret ever reaches a log line, even when users fail.
func TestJWTModeAndNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 12, Users: 2, HistoryDays: 1, JWTSecret: "jwt-secret-do-not-log"}})
	bad := e.sim.Users()[1]
	e.sim.SetFault(bad, simulator.Fault{Status: 401})
	s := e.newSyncer(e.st, e.client(func(c *upstream.Config) { c.AdminToken = ""; c.JWTSecret = "jwt-secret-do-not-log" }), e.opts)
	sum := e.cycle(s, syncer.CycleOptions{})
	if sum.Synced != 1 || sum.Failed != 1 {
		t.Fatalf("summary %+v", sum)
	}
	e.assertMirrors(e.sim.Users()[0])
	for _, ent := range e.logs.All() {
		line := fmt.Sprint(ent.Message, ent.ContextMap())
		for _, secret := range []string{"jwt-secret-do-not-log", "test-admin", "eyJ"} {
			if strings.Contains(line, secret) {
				t.Fatalf("log line leaks a secret (%q): %s", secret, line)
			}
		}
	}
	if strings.Contains(sum.Line(), "eyJ") {
		t.Fatal("summary leaks a token")
	}
}

// A user deleted from profiles keeps its sync_state (the worker deletes nothing) but is no
// longer synced; --user for it is refused.
func TestDeletedProfileIsNoLongerSynced(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 13, Users: 2, HistoryDays: 1}})
	s := e.syncer()
	e.cycle(s, syncer.CycleOptions{})
	gone := e.sim.Users()[0]
	if _, err := e.db.Exec(context.Background(), `
		with c as (delete from user_credits where user_id = $1) delete from profiles where user_id = $1`, gone); err != nil {
		t.Fatal(err)
	}
	if sum := e.cycle(s, syncer.CycleOptions{All: true}); sum.Due != 1 {
		t.Fatalf("summary %+v; want only the remaining user", sum)
	}
	if _, err := s.RunCycle(context.Background(), syncer.CycleOptions{UserID: gone}); !errors.Is(err, syncer.ErrUnknownUser) {
		t.Fatalf("--user for a deleted profile: %v, want ErrUnknownUser", err)
	}
}
