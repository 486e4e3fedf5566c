package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/hostile"
	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// The set-up for every hostile scenario: users A, B and C with 1,000 credits each,
// charging on, --once --all; the simulator is honest, the hostile upstream in front of it lies
// where a test says.
func setupHostile(t *testing.T) (e *env, h *hostile.Upstream, a, b, c string) {
	t.Helper()
	e = setup(t, envConfig{sim: simulator.Config{Seed: 81, Users: 3, KeysPerUser: -1, TasksPerUser: -1}, balance: 1000})
	h = hostile.New(e.sim.Handler())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.base = srv.URL + "/api/v1"
	u := e.sim.Users()
	return e, h, u[0], u[1], u[2]
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// userView is what a hostile test checks of one user after a cycle.
type userView struct {
	Status, Kind, LastError string
	Failures                int
	LeaseFree               bool
	Charged, Balance        int64
	Keys, Tasks, Usage      int64
}

func (e *env) view(user string) userView {
	e.t.Helper()
	var v userView
	err := e.db.QueryRow(context.Background(), `
		select status, coalesce(last_error_kind, ''), coalesce(last_error, ''), consecutive_failures, lease_owner is null,
		       (select coalesce(sum(amount), 0) from credit_ledger where user_id = s.user_id)::bigint,
		       coalesce((select credits_remaining from user_credits where user_id = s.user_id), -1)::bigint,
		       (select count(*) from api_keys where user_id = s.user_id),
		       (select count(*) from tasks where user_id = s.user_id),
		       (select count(*) from api_usage where user_id = s.user_id and origin = 'usage-sync')
		from sync_state s where user_id = $1`, user).
		Scan(&v.Status, &v.Kind, &v.LastError, &v.Failures, &v.LeaseFree, &v.Charged, &v.Balance, &v.Keys, &v.Tasks, &v.Usage)
	if err != nil {
		e.t.Fatalf("view of %s: %v", user, err)
	}
	return v
}

// userEvent returns the fields of the one line named event logged for user.
func (e *env) userEvent(event, user string) map[string]any {
	e.t.Helper()
	var found []map[string]any
	for _, l := range e.events(event) {
		if m := l.ContextMap(); m["user_id"] == user {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		e.t.Fatalf("no %s logged for %s", event, user)
	}
	return found[len(found)-1]
}

func unsafeText(s string) bool { return strings.ContainsAny(s, "\x00\x1b\u009b") }

// Bug 1: a NUL (or an escape sequence) in an error body is cleaned; the failure is recorded,
// the lease released, the next attempt scheduled, and the next run takes the user again.
func TestHostileNULInErrorBody(t *testing.T) {
	t.Parallel()
	e, h, a, b, c := setupHostile(t)
	h.On(hostile.Always(hostile.For(a, "/api-keys"), hostile.Reply{Status: 400,
		Body: []byte(`{"error":"bad request \u0000 here \u001b[31mred\u001b[0m"}`)}))
	h.On(hostile.Always(hostile.For(c, "/api-keys"), hostile.Reply{Status: 403,
		Header: map[string]string{"Content-Type": "text/html"}, Body: []byte("<html>\x00 forbidden \x1b[2J\xff</html>")}))

	s := e.syncer()
	sum := e.cycle(s, syncer.CycleOptions{All: true})
	if sum.Failed != 2 || sum.Synced != 1 {
		t.Fatalf("summary %+v, want A and C failed, B synced", sum)
	}
	if unsafeText(sum.Line()) {
		t.Fatalf("the stderr summary carries raw control bytes: %q", sum.Line())
	}
	va, vc := e.view(a), e.view(c)
	if va.Status != "error" || va.Kind != "permanent" || va.Failures != 1 || !va.LeaseFree ||
		!strings.Contains(va.LastError, "400 Bad Request: bad request here [31mred [0m") || unsafeText(va.LastError) {
		t.Fatalf("A after a NUL in a 400 body: %+v", va)
	}
	if vc.Status != "error" || vc.Kind != "auth" || !vc.LeaseFree || !strings.Contains(vc.LastError, "forbidden [2J\ufffd") || unsafeText(vc.LastError) {
		t.Fatalf("C after a NUL in a 403 page: %+v", vc)
	}
	if n := len(e.events("sync.user.record_failed")); n != 0 {
		t.Fatalf("%d failures could not be recorded", n)
	}
	failed := e.userEvent("sync.user.failed", a)
	if next, ok := failed["next_attempt_at"].(time.Time); !ok || next.Year() < 2026 {
		t.Fatalf("sync.user.failed logs next_attempt_at %v", failed["next_attempt_at"])
	}
	for _, u := range []string{a, c} {
		if v := e.view(u); v.Charged != 0 || v.Balance != 1000 || v.Keys != 0 {
			t.Fatalf("%s: a failed user was written or charged: %+v", u, v)
		}
	}
	// The next run is not fooled into "leased by another worker": it takes A and C again.
	sum = e.cycle(s, syncer.CycleOptions{All: true})
	if sum.Skipped != 0 || sum.Failed != 2 || e.view(a).Failures != 2 {
		t.Fatalf("second run: %+v, A %+v", sum, e.view(a))
	}
	if v := e.view(b); v.Status != "ok" {
		t.Fatalf("B: %+v", v)
	}
}

// Bug 2: a negative window total is inconsistent data: not stored, not charged, the key
// blocked and shown, though every window is within the lifetime total.
func TestHostileNegativeWindow(t *testing.T) {
	t.Parallel()
	e, h, a, _, _ := setupHostile(t)
	now := e.clock.Now()
	key := func(total int64) []byte {
		return jsonBody(t, map[string]any{"count": 1, "keys": []map[string]any{{"id": "k-neg", "name": "zap", "purpose": "zapier",
			"is_active": true, "created_at": stamp(now.Add(-72 * time.Hour)), "last_used_at": stamp(now.Add(-time.Minute)), "total_requests": total}}})
	}
	cfDay := e.chargeFrom.Format(time.DateOnly)
	h.On(func(r *http.Request) (hostile.Reply, bool) {
		if !hostile.For(a, "/api-keys")(r) {
			return hostile.Reply{}, false
		}
		switch {
		case hostile.Lifetime(r):
			return hostile.Reply{Body: key(100)}, true
		case strings.HasPrefix(r.URL.Query().Get("from"), cfDay):
			return hostile.Reply{Body: key(-100)}, true
		}
		return hostile.Reply{Body: key(100)}, true
	})
	sum := e.cycle(e.syncer(), syncer.CycleOptions{All: true})
	if sum.Degraded != 1 || sum.Failed != 0 {
		t.Fatalf("summary %+v, want A degraded", sum)
	}
	v := e.view(a)
	if v.Status != "degraded" || v.Charged != 0 || v.Balance != 1000 || !strings.Contains(v.LastError, "-100") {
		t.Fatalf("A with a -100 window: %+v", v)
	}
	if n := e.q(`select count(*) from api_usage where count < 0`); n != 0 {
		t.Fatalf("%d negative usage rows stored", n)
	}
	if n := e.q(`select count(*) from api_usage where user_id = $1 and api_key_id = 'k-neg'`, a); n != 2 {
		t.Fatalf("want the two sane days stored, got %d rows", n)
	}
	if n := e.q(`select count(*) from sync_state where user_id = $1 and blocked_keys ? 'k-neg'`, a); n != 1 {
		t.Fatal("k-neg is not shown as blocked in sync_state")
	}
	blocked := e.userEvent("charge.key_blocked", a)
	if blocked["key_id"] != "k-neg" || !strings.Contains(blocked["reason"].(string), "negative") {
		t.Fatalf("charge.key_blocked: %v", blocked)
	}
	e.checkInvariants(false)
}

// Bug 2, tasks: a task with a negative count is neither stored nor charged, and is shown.
func TestHostileNegativeTaskCounts(t *testing.T) {
	t.Parallel()
	e, h, a, _, _ := setupHostile(t)
	now := e.clock.Now()
	task := func(id string, results map[string]int64) map[string]any {
		return map[string]any{"id": id, "user_id": a, "created_at": stamp(now.Add(-time.Hour)), "finished_at": stamp(now.Add(-time.Minute)),
			"metrics": map[string]any{"total_email_addresses": 20, "verification_status": results}}
	}
	h.On(hostile.Always(hostile.For(a, "/tasks"), hostile.Reply{Body: jsonBody(t, map[string]any{"count": 2, "tasks": []any{
		task("t-neg", map[string]int64{"valid": -5, "invalid": 20}), task("t-ok", map[string]int64{"valid": 7}),
	}})}))
	sum := e.cycle(e.syncer(), syncer.CycleOptions{All: true})
	if sum.Degraded != 1 {
		t.Fatalf("summary %+v, want A degraded", sum)
	}
	v := e.view(a)
	if v.Status != "degraded" || v.Tasks != 1 || v.Charged != 7 || v.Balance != 993 || !strings.Contains(v.LastError, "task/t-neg") {
		t.Fatalf("A with a negative task count: %+v", v)
	}
	if n := e.q(`select count(*) from tasks where task_id = 't-neg'`); n != 0 {
		t.Fatal("the task with a negative count was stored")
	}
	if blocked := e.userEvent("charge.key_blocked", a); blocked["key_id"] != "task/t-neg" {
		t.Fatalf("charge.key_blocked: %v", blocked)
	}
}

// Bug 4: a redirect is not followed, so the admin token never leaves the configured origin and
// nothing another server says is mirrored or charged; the error names the Location.
func TestHostileRedirect(t *testing.T) {
	t.Parallel()
	e, h, a, b, c := setupHostile(t)
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"count":1,"keys":[{"id":"k-evil","total_requests":500,"is_active":true}]}`)
	}))
	t.Cleanup(other.Close)
	target := other.URL + "/api/v1/api-keys?user_id=" + a
	h.On(hostile.Always(hostile.For(a, "/api-keys"), hostile.Reply{Status: http.StatusMovedPermanently, Header: map[string]string{"Location": target}}))
	h.On(hostile.Always(hostile.For(c, "/api-keys"), hostile.Reply{Status: http.StatusFound, Header: map[string]string{"Location": "http://elsewhere.invalid/api/v1/api-keys"}}))

	sum := e.cycle(e.syncer(), syncer.CycleOptions{All: true})
	if sum.Failed != 2 || sum.Synced != 1 {
		t.Fatalf("summary %+v", sum)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect was followed: the other server got %d requests", n)
	}
	va := e.view(a)
	if va.Kind != "permanent" || va.Charged != 0 || va.Balance != 1000 || va.Keys != 0 ||
		!strings.Contains(va.LastError, "301 Moved Permanently: redirect to "+target+" not followed") {
		t.Fatalf("A after a 301: %+v", va)
	}
	if vc := e.view(c); vc.Kind != "permanent" || !strings.Contains(vc.LastError, "redirect to http://elsewhere.invalid/api/v1/api-keys not followed") {
		t.Fatalf("C after a 302: %+v", vc)
	}
	if n := e.q(`select count(*) from api_keys where id = 'k-evil'`); n != 0 {
		t.Fatal("another server's answer was mirrored")
	}
	if f := e.userEvent("sync.user.failed", a); f["kind"] != "permanent" || !strings.Contains(f["error"].(string), "redirect to") {
		t.Fatalf("sync.user.failed: %v", f)
	}
	if v := e.view(b); v.Status != "ok" {
		t.Fatalf("B: %+v", v)
	}
}

// Bug 5: ids from another user's listing never take over that user's rows. The user whose
// listing carried them fails with a conflict, and is charged nothing for rows it could not
// mirror. The log names both users and the id; last_error, which the user reads, names
// neither the other user nor the id (issue 13, finding 7).
func TestHostileOwnership(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"owner", "intruder"} {
		t.Run(first+" first", func(t *testing.T) {
			t.Parallel()
			e, h, a, b, _ := setupHostile(t)
			now := e.clock.Now()
			e.sim.AddKey(b, simulator.Key{ID: "k-b", Name: "b's key", Purpose: "zapier", CreatedAt: now.Add(-48 * time.Hour)})
			reqs := make([]time.Time, 30)
			for i := range reqs {
				reqs[i] = now.Add(-time.Duration(i+1) * time.Second)
			}
			e.sim.AddRequests(b, "k-b", reqs...)
			e.sim.AddTask(b, simulator.Task{ID: "t-b", CreatedAt: now.Add(-time.Hour), Emails: 57, Done: 57, Finished: true,
				Results: map[string]int64{"valid": 57}})
			// A's listings are B's, relabelled as A's.
			h.On(h.AsUser(hostile.For(a, ""), a, b, true))

			s := e.syncer()
			owner, intruder := b, a
			order := []string{b, a}
			if first == "intruder" {
				// The intruder's listing comes first: the rows are inserted under it (nothing
				// in a key summary says whose key it is); then the owner's sync is the one
				// whose listing carries rows someone else holds.
				owner, intruder = a, b
				order = []string{a, b}
			}
			for _, u := range order {
				e.cycle(s, syncer.CycleOptions{UserID: u})
			}
			vo, vi := e.view(owner), e.view(intruder)
			if vo.Status != "ok" || vo.Keys != 1 || vo.Tasks != 1 || vo.Charged != 87 {
				t.Fatalf("the user first to hold the rows: %+v", vo)
			}
			if vi.Status != "error" || vi.Kind != "conflict" || vi.Charged != 0 || vi.Balance != 1000 || vi.Keys != 0 || vi.Tasks != 0 ||
				strings.Contains(vi.LastError, owner) || strings.Contains(vi.LastError, "k-b") ||
				!strings.Contains(vi.LastError, "under this user that another user holds: not reassigned, nothing written") {
				t.Fatalf("the user whose listing carried another's rows: %+v", vi)
			}
			for _, tbl := range []string{`select count(*) from api_keys where id = 'k-b' and user_id = $1`, `select count(*) from tasks where task_id = 't-b' and user_id = $1`} {
				if e.q(tbl, owner) != 1 {
					t.Fatalf("a row was reassigned: %s", tbl)
				}
			}
			f := e.userEvent("sync.user.failed", intruder)
			if f["kind"] != "conflict" || f["owner_user_id"] != owner || f["conflict_id"] != "k-b" {
				t.Fatalf("sync.user.failed should name both users and the id: %v", f)
			}
		})
	}
}

// Bug 6: entries naming another user are dropped with a counted warning; a reply that is all
// another user's fails the sync as decode.
func TestHostileForeignUserID(t *testing.T) {
	t.Parallel()
	e, h, a, b, c := setupHostile(t)
	now := e.clock.Now()
	task := func(id, owner string, valid int64) map[string]any {
		return map[string]any{"id": id, "user_id": owner, "created_at": stamp(now.Add(-time.Hour)), "finished_at": stamp(now.Add(-time.Minute)),
			"metrics": map[string]any{"total_email_addresses": valid, "verification_status": map[string]int64{"valid": valid}}}
	}
	h.On(hostile.Always(hostile.For(a, "/tasks"), hostile.Reply{Body: jsonBody(t, map[string]any{"count": 3, "tasks": []any{
		task("t-a", a, 5), task("t-b1", b, 50), task("t-b2", b, 60)}})}))
	h.On(hostile.Always(hostile.For(c, "/tasks"), hostile.Reply{Body: jsonBody(t, map[string]any{"count": 1, "tasks": []any{task("t-b3", b, 70)}})}))
	h.On(hostile.Always(hostile.For(b, "/metrics/api-usage"), hostile.Reply{Body: jsonBody(t, map[string]any{"user_id": a, "total_requests": 3,
		"requests_by_purpose": map[string]int64{"zapier": 3}})}))

	sum := e.cycle(e.syncer(), syncer.CycleOptions{All: true})
	if sum.Synced != 1 || sum.Failed != 2 {
		t.Fatalf("summary %+v", sum)
	}
	va := e.view(a)
	if va.Status != "ok" || va.Tasks != 1 || va.Charged != 5 || va.Balance != 995 {
		t.Fatalf("A: %+v", va)
	}
	if n := e.q(`select count(*) from tasks where task_id like 't-b%'`); n != 0 {
		t.Fatalf("%d tasks labelled with another user were stored", n)
	}
	dropped := e.userEvent("upstream.entries.dropped", a)
	if dropped["entries"] != int64(2) || dropped["why"] != "2 another user's" {
		t.Fatalf("upstream.entries.dropped: %v", dropped)
	}
	for _, u := range []string{b, c} {
		v := e.view(u)
		if v.Status != "error" || v.Kind != "decode" || v.Charged != 0 || v.Tasks != 0 || !strings.Contains(v.LastError, "not of the user asked for") {
			t.Fatalf("%s, whose whole reply named another user: %+v", u, v)
		}
	}
}

// Weak spot: a count the dashboard's integer columns cannot hold is a decode error, not an
// internal one on every cycle.
func TestHostileCountBeyond32Bits(t *testing.T) {
	t.Parallel()
	e, h, a, b, _ := setupHostile(t)
	h.On(hostile.Always(hostile.For(a, "/api-keys"), hostile.Reply{Body: []byte(`{"count":1,"keys":[{"id":"k-big","total_requests":3000000000}]}`)}))
	h.On(hostile.Always(hostile.For(b, "/tasks"), hostile.Reply{Body: jsonBody(t, map[string]any{"count": 1, "tasks": []any{map[string]any{
		"id": "t-big", "user_id": b, "created_at": stamp(e.clock.Now().Add(-time.Hour)), "finished_at": stamp(e.clock.Now()),
		"metrics": map[string]any{"verification_status": map[string]int64{"valid": 1 << 30, "invalid": 1 << 30, "unknown": 1 << 30}}}}})}))
	sum := e.cycle(e.syncer(), syncer.CycleOptions{All: true})
	if sum.Failed != 2 {
		t.Fatalf("summary %+v", sum)
	}
	for u, want := range map[string]string{a: "total_requests of key k-big is 3000000000", b: "billable emails is 3221225472"} {
		v := e.view(u)
		if v.Kind != "decode" || !strings.Contains(v.LastError, want) || v.Charged != 0 || v.Keys != 0 || v.Tasks != 0 {
			t.Fatalf("%s: %+v, want a decode error naming %q", u, v, want)
		}
	}
}

// Weak spot: ids too long or with control characters are dropped with a warning, not fatal
// every cycle; names are cleaned.
func TestHostileBadIDsAndNames(t *testing.T) {
	t.Parallel()
	e, h, a, _, _ := setupHostile(t)
	long := strings.Repeat("k", 10000)
	h.On(hostile.Always(hostile.For(a, "/api-keys"), hostile.Reply{Body: jsonBody(t, map[string]any{"count": 3, "keys": []any{
		map[string]any{"id": long, "total_requests": 1},
		map[string]any{"id": "k\x00nul", "total_requests": 1},
		map[string]any{"id": "k-good", "name": "na\x00me \x1b[31mred", "purpose": "zap\x00ier", "total_requests": 0},
	}})}))
	sum := e.cycle(e.syncer(), syncer.CycleOptions{UserID: a})
	if sum.Synced != 1 {
		t.Fatalf("summary %+v", sum)
	}
	if v := e.view(a); v.Status != "ok" || v.Keys != 1 {
		t.Fatalf("A: %+v", v)
	}
	if n := e.q(`select count(*) from api_keys where id = 'k-good' and name = 'na me [31mred' and purpose = 'zap ier'`); n != 1 {
		t.Fatal("the key's name was not cleaned")
	}
	var dropped int
	for _, l := range e.events("upstream.entries.dropped") {
		if m := l.ContextMap(); m["user_id"] == a && m["why"] == "2 bad id" {
			dropped++
		}
	}
	if dropped == 0 {
		t.Fatal("no warning counted the dropped keys")
	}
}

// Weak spot: a profile deleted while its user is being synced gets no mirror and no ledger rows.
func TestProfileDeletedDuringSync(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 82, Users: 2, KeysPerUser: 2, TasksPerUser: 3, HistoryDays: 2}})
	gone := e.sim.Users()[0]
	s := e.syncer()
	s.SetHooks(&syncer.Hooks{BeforeApply: func(ctx context.Context, user string) error {
		if user == gone {
			_, err := e.db.Exec(ctx, `delete from user_credits where user_id = $1; `, user)
			if err == nil {
				_, err = e.db.Exec(ctx, `delete from profiles where user_id = $1`, user)
			}
			return err
		}
		return nil
	}})
	sum := e.cycle(s, syncer.CycleOptions{All: true})
	if sum.Failed != 1 || sum.Synced != 1 {
		t.Fatalf("summary %+v", sum)
	}
	for _, tbl := range []string{"api_keys", "tasks", "credit_ledger", "api_usage"} {
		if n := e.q(`select count(*) from `+tbl+` where user_id = $1`, gone); n != 0 {
			t.Fatalf("%d %s rows written for a deleted profile", n, tbl)
		}
	}
	if f := e.userEvent("sync.user.failed", gone); f["kind"] != "permanent" || !strings.Contains(f["error"].(string), "profile was deleted") {
		t.Fatalf("sync.user.failed: %v", f)
	}
	e.assertMirrors(e.sim.Users()[1])
}
