package simulator_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/usage-sync/usage-sync/internal/simulator"
)

const (
	adminToken = "admin-token-for-tests"
	jwtSecret  = "jwt-secret-for-tests"
)

// t0 is not on an hour boundary, so the generated anchor differs from the clock.
var t0 = time.Date(2026, 3, 10, 12, 34, 56, 789000000, time.UTC)

// clock is a controllable simulated clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start builds a simulator from cfg (with test tokens and a clock at t0 unless set) and
// serves it over real HTTP.
func start(t *testing.T, cfg simulator.Config) (*simulator.Sim, *httptest.Server) {
	t.Helper()
	if cfg.AdminToken == "" {
		cfg.AdminToken = adminToken
	}
	if cfg.JWTSecret == "" {
		cfg.JWTSecret = jwtSecret
	}
	if cfg.Now == nil {
		cfg.Now = newClock(t0).Now
	}
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return sim, srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// call sends GET path?query with the given Authorization header value ("" sends none).
func call(t *testing.T, ctx context.Context, srv *httptest.Server, auth, path string, q url.Values) (response, error) {
	t.Helper()
	u := srv.URL + "/api/v1" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s: %v", path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// admin calls path as admin for user and fails the test on a transport error.
func admin(t *testing.T, srv *httptest.Server, user, path string, q url.Values) response {
	t.Helper()
	if q == nil {
		q = url.Values{}
	}
	q.Set("user_id", user)
	r, err := call(t, context.Background(), srv, "Bearer "+adminToken, path, q)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// adminJSON calls path as admin, requires 200 and decodes the body into out.
func adminJSON(t *testing.T, srv *httptest.Server, user, path string, q url.Values, out any) {
	t.Helper()
	r := admin(t, srv, user, path, q)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", path, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		t.Fatalf("decode %s: %v; body %s", path, err, r.body)
	}
}

func mintJWT(t *testing.T, secret, sub, aud string, exp time.Time) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "aud": aud, "exp": exp.Unix(), "role": "authenticated"}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func window(from, to time.Time) url.Values {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("to", to.Format(time.RFC3339Nano))
	}
	return q
}

// Independent wire shapes: decoding with the simulator's own types would hide a wrong tag.

type keyList struct {
	Count int `json:"count"`
	Keys  []struct {
		ID            string  `json:"id"`
		Name          string  `json:"name"`
		Purpose       string  `json:"purpose"`
		IsActive      bool    `json:"is_active"`
		CreatedAt     string  `json:"created_at"`
		LastUsedAt    *string `json:"last_used_at"`
		TotalRequests int64   `json:"total_requests"`
	} `json:"keys"`
}

func (l keyList) totals() map[string]int64 {
	m := make(map[string]int64, len(l.Keys))
	for _, k := range l.Keys {
		m[k.ID] = k.TotalRequests
	}
	return m
}

type usage struct {
	UserID            string           `json:"user_id"`
	TotalAPIKeys      int              `json:"total_api_keys"`
	TotalRequests     int64            `json:"total_requests"`
	APIKeysByPurpose  map[string]int64 `json:"api_keys_by_purpose"`
	RequestsByPurpose map[string]int64 `json:"requests_by_purpose"`
	LastUsedAt        *string          `json:"last_used_at"`
}

type metrics struct {
	TotalEmailAddresses int              `json:"total_email_addresses"`
	JobStatus           map[string]int64 `json:"job_status"`
	VerificationStatus  map[string]int64 `json:"verification_status"`
	Progress            float64          `json:"progress"`
	ProgressPercent     int              `json:"progress_percent"`
	LastRequestedAt     *string          `json:"last_verification_requested_at"`
	LastCompletedAt     *string          `json:"last_verification_completed_at"`
}

type taskJSON struct {
	ID         string          `json:"id"`
	UserID     string          `json:"user_id"`
	WebhookURL *string         `json:"webhook_url"`
	CreatedAt  string          `json:"created_at"`
	UpdatedAt  *string         `json:"updated_at"`
	Metrics    metrics         `json:"metrics"`
	Source     string          `json:"source"`
	XFuture    json.RawMessage `json:"x_future"`
	StartedAt  *string         `json:"started_at"`
	FinishedAt *string         `json:"finished_at"`
	Jobs       []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"jobs"`
}

type taskList struct {
	Count  int        `json:"count"`
	Limit  int        `json:"limit"`
	Offset int        `json:"offset"`
	Tasks  []taskJSON `json:"tasks"`
}

// allTasks lists every task of user through /tasks, 100 at a time.
func allTasks(t *testing.T, srv *httptest.Server, user string) []taskJSON {
	t.Helper()
	var out []taskJSON
	for off := 0; ; off += 100 {
		var page taskList
		adminJSON(t, srv, user, "/tasks", url.Values{"limit": {"100"}, "offset": {itoa(off)}}, &page)
		out = append(out, page.Tasks...)
		if off+100 >= page.Count {
			return out
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func parseStamp(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("timestamp %q: %v", s, err)
	}
	return ts
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSameSeedSameData(t *testing.T) {
	t.Parallel()
	cfg := simulator.Config{Seed: 42}
	simA, srvA := start(t, cfg)
	simB, srvB := start(t, cfg)

	users := simA.Users()
	if len(users) != 3 {
		t.Fatalf("default users = %d, want 3", len(users))
	}
	if !reflect.DeepEqual(users, simB.Users()) {
		t.Fatalf("users differ for one seed: %v vs %v", users, simB.Users())
	}
	for _, u := range users {
		if !uuidV4.MatchString(u) {
			t.Errorf("user id %q is not a v4-shaped UUID", u)
		}
		if !reflect.DeepEqual(simA.Keys(u), simB.Keys(u)) {
			t.Errorf("keys of %s differ for one seed", u)
		}
		if !reflect.DeepEqual(simA.Tasks(u), simB.Tasks(u)) {
			t.Errorf("tasks of %s differ for one seed", u)
		}
		if n := len(simA.Keys(u)); n != 3 {
			t.Errorf("user %s has %d keys, want 3", u, n)
		}
		if n := len(simA.Tasks(u)); n != 5 {
			t.Errorf("user %s has %d tasks, want 5", u, n)
		}
		for _, path := range []string{"/api-keys", "/tasks", "/metrics/api-usage"} {
			a, b := admin(t, srvA, u, path, nil), admin(t, srvB, u, path, nil)
			if a.status != http.StatusOK || string(a.body) != string(b.body) {
				t.Errorf("%s for %s: status %d, bodies differ between runs of one seed", path, u, a.status)
			}
		}
	}
	other := simulator.New(simulator.Config{Seed: 43, Now: newClock(t0).Now}).Users()
	if reflect.DeepEqual(users, other) {
		t.Errorf("seeds 42 and 43 produced the same users %v", users)
	}
}

// Range-scoped totals: the UTC day windows of a key add up to its lifetime total, both on the
// wire and in the ground truth.
func TestDayWindowsAddUpToLifetime(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Seed: 7})
	first := t0.Truncate(24 * time.Hour).Add(-6 * 24 * time.Hour)
	var lifetimeSum int64
	for _, u := range sim.Users() {
		var life keyList
		adminJSON(t, srv, u, "/api-keys", nil, &life)
		lifetime := life.totals()
		sums := make(map[string]int64)
		var usageSum int64
		for d := first; d.Before(t0); d = d.Add(24 * time.Hour) {
			var win keyList
			adminJSON(t, srv, u, "/api-keys", window(d, d.Add(24*time.Hour)), &win)
			for _, k := range win.Keys {
				if k.TotalRequests == 0 {
					t.Errorf("window %s lists key %s with no requests", d.Format(time.DateOnly), k.ID)
				}
				if want := sim.KeyRequests(u, k.ID, d, d.Add(24*time.Hour)); k.TotalRequests != want {
					t.Errorf("window %s key %s: wire %d, ground truth %d", d.Format(time.DateOnly), k.ID, k.TotalRequests, want)
				}
				sums[k.ID] += k.TotalRequests
			}
			var us usage
			adminJSON(t, srv, u, "/metrics/api-usage", window(d, d.Add(24*time.Hour)), &us)
			usageSum += us.TotalRequests
		}
		for _, k := range sim.Keys(u) {
			if lifetime[k.ID] != k.Lifetime || sums[k.ID] != k.Lifetime {
				t.Errorf("key %s: lifetime wire %d, truth %d, sum of day windows %d", k.ID, lifetime[k.ID], k.Lifetime, sums[k.ID])
			}
			lifetimeSum += k.Lifetime
		}
		var us usage
		adminJSON(t, srv, u, "/metrics/api-usage", nil, &us)
		if us.TotalRequests != usageSum {
			t.Errorf("user %s: usage lifetime %d, sum of day windows %d", u, us.TotalRequests, usageSum)
		}
	}
	if lifetimeSum == 0 {
		t.Fatal("generated data set has no requests at all")
	}
}

func TestRangeIsHalfOpenAndExact(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	sim, srv := start(t, simulator.Config{Users: -1, Now: clk.Now})
	const user = "11111111-1111-4111-8111-111111111111"
	base := t0.Add(-time.Hour)
	sim.AddKey(user, simulator.Key{ID: "k1", Name: "one", Purpose: "zapier", CreatedAt: base.Add(-time.Hour)})
	sim.AddRequests(user, "k1", base, base.Add(time.Nanosecond), base.Add(500*time.Millisecond), base.Add(time.Second), t0.Add(time.Hour))

	tests := []struct {
		name     string
		from, to time.Time
		want     int64 // 0: the key must not be listed
	}{
		{"one nanosecond", base, base.Add(time.Nanosecond), 1},
		{"to is exclusive", base.Add(time.Nanosecond), base.Add(time.Second), 2},
		{"fractional from", base.Add(250 * time.Millisecond), base.Add(2 * time.Second), 2},
		{"only from, future excluded", base, time.Time{}, 4},
		{"only to", time.Time{}, base.Add(time.Second), 3},
		{"empty range", base.Add(2 * time.Second), t0, 0},
		{"future window", t0, t0.Add(2 * time.Hour), 0},
	}
	for _, tc := range tests {
		// Not parallel: the clock moves once these have run.
		t.Run(tc.name, func(t *testing.T) {
			var l keyList
			adminJSON(t, srv, user, "/api-keys", window(tc.from, tc.to), &l)
			got := l.totals()["k1"]
			if got != tc.want || (tc.want == 0) != (l.Count == 0) {
				t.Errorf("total %d with count %d, want %d", got, l.Count, tc.want)
			}
			if truth := sim.KeyRequests(user, "k1", tc.from, tc.to); truth != tc.want {
				t.Errorf("KeyRequests = %d, want %d", truth, tc.want)
			}
		})
	}

	var life keyList
	adminJSON(t, srv, user, "/api-keys", nil, &life)
	if life.Count != 1 || life.Keys[0].TotalRequests != 4 || life.Keys[0].LastUsedAt == nil ||
		!parseStamp(t, *life.Keys[0].LastUsedAt).Equal(base.Add(time.Second)) {
		t.Fatalf("lifetime listing before the clock moves: %+v", life)
	}
	clk.Advance(2 * time.Hour)
	if got := sim.Keys(user)[0]; got.Lifetime != 5 || !got.LastUsedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after the clock passed the last request: lifetime %d, last used %v", got.Lifetime, got.LastUsedAt)
	}
}

func TestRevokedKeyLeavesListingButCountsInUsage(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Users: -1})
	const user = "22222222-2222-4222-8222-222222222222"
	day := t0.Truncate(24 * time.Hour)
	sim.AddKey(user, simulator.Key{ID: "live", Purpose: "zapier", CreatedAt: day.Add(-48 * time.Hour)})
	sim.AddKey(user, simulator.Key{ID: "gone", Purpose: "n8n", CreatedAt: day.Add(-48 * time.Hour)})
	sim.AddRequests(user, "live", day.Add(time.Hour), day.Add(2*time.Hour))
	sim.AddRequests(user, "gone", day.Add(time.Hour), day.Add(3*time.Hour), day.Add(4*time.Hour))
	sim.RevokeKey(user, "gone")

	for _, q := range []url.Values{nil, window(day, day.Add(24*time.Hour))} {
		var l keyList
		adminJSON(t, srv, user, "/api-keys", q, &l)
		if l.Count != 1 || len(l.Keys) != 1 || l.Keys[0].ID != "live" || !l.Keys[0].IsActive {
			t.Errorf("listing %v: %+v, want only the live key", q, l)
		}
	}
	var us usage
	adminJSON(t, srv, user, "/metrics/api-usage", window(day, day.Add(24*time.Hour)), &us)
	want := usage{
		UserID:            user,
		TotalAPIKeys:      1,
		TotalRequests:     5,
		APIKeysByPurpose:  map[string]int64{"zapier": 1},
		RequestsByPurpose: map[string]int64{"zapier": 2, "n8n": 3},
	}
	if us.LastUsedAt == nil || !parseStamp(t, *us.LastUsedAt).Equal(day.Add(4*time.Hour)) {
		t.Errorf("usage last_used_at = %v, want the revoked key's last request", us.LastUsedAt)
	}
	us.LastUsedAt = nil
	if !reflect.DeepEqual(us, want) {
		t.Errorf("usage = %+v, want %+v", us, want)
	}
	keys := sim.Keys(user)
	if len(keys) != 2 || keys[1].ID != "gone" || !keys[1].Revoked || keys[1].Lifetime != 3 {
		t.Errorf("ground truth keys = %+v", keys)
	}
}

func TestLifetimeInWindowsFlip(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Users: -1})
	const user = "33333333-3333-4333-8333-333333333333"
	d1 := t0.Truncate(24 * time.Hour).Add(-48 * time.Hour)
	d2 := d1.Add(24 * time.Hour)
	sim.AddKey(user, simulator.Key{ID: "k", Purpose: "custom", CreatedAt: d1.Add(-time.Hour)})
	sim.AddRequests(user, "k", d1.Add(time.Hour), d1.Add(2*time.Hour), d1.Add(3*time.Hour), d2.Add(time.Hour), d2.Add(2*time.Hour))

	tests := []struct {
		name   string
		on     bool
		window time.Time
		want   int64 // 0: not listed
	}{
		{"range-scoped day 1", false, d1, 3},
		{"range-scoped day 2", false, d2, 2},
		{"flipped day 1: last use is on day 2", true, d1, 0},
		{"flipped day 2: lifetime total", true, d2, 5},
	}
	for _, tc := range tests {
		sim.SetLifetimeInWindows(user, tc.on)
		var l keyList
		adminJSON(t, srv, user, "/api-keys", window(tc.window, tc.window.Add(24*time.Hour)), &l)
		if got := l.totals()["k"]; got != tc.want || (tc.want == 0) != (l.Count == 0) {
			t.Errorf("%s: total %d, count %d, want %d", tc.name, got, l.Count, tc.want)
		}
		var life keyList
		adminJSON(t, srv, user, "/api-keys", nil, &life)
		if life.totals()["k"] != 5 {
			t.Errorf("%s: lifetime listing %d, want 5", tc.name, life.totals()["k"])
		}
	}
	if got := sim.KeyRequests(user, "k", d1, d2); got != 3 {
		t.Errorf("ground truth stays range-scoped: %d, want 3", got)
	}
}

func TestGeneratedWireQuirks(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Seed: 3})
	seen := map[string]bool{}
	for _, u := range sim.Users() {
		var keys keyList
		adminJSON(t, srv, u, "/api-keys", nil, &keys)
		for _, k := range keys.Keys {
			seen["purpose "+k.Purpose] = true
			if k.LastUsedAt == nil {
				seen["never used key"] = true
			}
		}
		for _, tk := range allTasks(t, srv, u) {
			if tk.UserID != u {
				t.Errorf("task %s has user_id %s, want %s", tk.ID, tk.UserID, u)
			}
			m := tk.Metrics
			switch {
			case m.VerificationStatus == nil:
				seen["no verification_status"] = true
			case m.VerificationStatus["exists"] > 0 && m.VerificationStatus["valid"] == 0:
				seen["old vocabulary"] = true
			case m.VerificationStatus["valid"] > 0 && m.VerificationStatus["exists"] == 0:
				seen["new vocabulary"] = true
				if _, ok := m.VerificationStatus["role_based"]; ok {
					seen["role_based aggregate"] = true
				}
			}
			switch js := m.JobStatus; {
			case js == nil:
				seen["no job_status"] = true
			case js["failed"] > 0 && js["completed"] > 0:
				seen["some emails failed"] = true
			case js["failed"] > 0 && js["completed"] == 0 && m.VerificationStatus != nil && resultSum(m.VerificationStatus) == 0:
				seen["every email failed"] = true
			}
			if tk.Source == "api_key" && string(tk.XFuture) == "{}" {
				seen["source and x_future"] = true
			}
			if tk.WebhookURL == nil {
				seen["null webhook_url"] = true
			}
			if tk.UpdatedAt == nil {
				seen["null updated_at"] = true
			}
			if m.Progress < 1 && m.JobStatus != nil && m.JobStatus["processing"] > 0 {
				seen["unfinished task"] = true
			}
		}
	}
	for _, want := range []string{
		"purpose zapier", "purpose n8n", "purpose custom", "purpose google sheets", "purpose google_sheets",
		"never used key", "no verification_status", "old vocabulary", "new vocabulary", "role_based aggregate",
		"no job_status", "some emails failed", "every email failed", "source and x_future", "null webhook_url", "null updated_at", "unfinished task",
	} {
		if !seen[want] {
			t.Errorf("default data set shows no %q", want)
		}
	}
}

// resultSum is what the task's results add up to, without the overlapping aggregates.
func resultSum(m map[string]int64) int64 {
	var n int64
	for k, v := range m {
		if k != "role_based" && k != "disposable_domain_emails" {
			n += v
		}
	}
	return n
}

func TestGeneratedTasksProgressWithClock(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	sim, srv := start(t, simulator.Config{Seed: 11, Now: clk.Now})
	user := sim.Users()[0]
	prev := map[string]simulator.TaskState{}
	unfinishedAtStart := 0
	for step, d := range []time.Duration{0, 10 * time.Minute, time.Hour, 3 * time.Hour, 24 * time.Hour} {
		clk.Advance(d)
		truth := sim.Tasks(user)
		wire := allTasks(t, srv, user)
		if len(wire) != len(truth) {
			t.Fatalf("step %d: wire lists %d tasks, ground truth %d", step, len(wire), len(truth))
		}
		for i, ts := range truth {
			w := wire[i]
			if w.ID != ts.ID {
				t.Fatalf("step %d: task %d is %s on the wire, %s in the ground truth", step, i, w.ID, ts.ID)
			}
			if step == 0 && !ts.Finished {
				unfinishedAtStart++
			}
			if ts.Results != nil && resultSum(ts.Results) != int64(ts.Done) {
				t.Errorf("step %d task %s: results add up to %d, done %d", step, ts.ID, resultSum(ts.Results), ts.Done)
			}
			if !reflect.DeepEqual(w.Metrics.VerificationStatus, ts.Results) {
				t.Errorf("step %d task %s: wire results %v, truth %v", step, ts.ID, w.Metrics.VerificationStatus, ts.Results)
			}
			if js := w.Metrics.JobStatus; js != nil && (js["completed"] != int64(ts.Done) || js["failed"] != int64(ts.Failed) ||
				js["pending"]+js["processing"]+js["completed"]+js["failed"] != int64(ts.Emails)) {
				t.Errorf("step %d task %s: job_status %v, truth done %d failed %d of %d", step, ts.ID, js, ts.Done, ts.Failed, ts.Emails)
			}
			if p, ok := prev[ts.ID]; ok {
				if ts.Done < p.Done || ts.Failed < p.Failed || (p.Finished && !ts.Finished) {
					t.Errorf("step %d task %s went backwards: %+v -> %+v", step, ts.ID, p, ts)
				}
				for name, n := range p.Results {
					if ts.Results[name] < n {
						t.Errorf("step %d task %s: %s fell from %d to %d", step, ts.ID, name, n, ts.Results[name])
					}
				}
			}
			prev[ts.ID] = ts
		}
	}
	if unfinishedAtStart == 0 {
		t.Fatal("no generated task was still running at the start: progression is untested")
	}
	// A day and a half later every task has finished, and the detail says so.
	for _, ts := range sim.Tasks(user) {
		var d taskJSON
		adminJSON(t, srv, user, "/tasks/"+ts.ID, nil, &d)
		if !ts.Finished || ts.FinishedAt == nil || d.FinishedAt == nil || !parseStamp(t, *d.FinishedAt).Equal(*ts.FinishedAt) {
			t.Errorf("task %s: finished %v at %v, detail finished_at %v", ts.ID, ts.Finished, ts.FinishedAt, d.FinishedAt)
			continue
		}
		if d.Metrics.Progress != 1 || d.Metrics.ProgressPercent != 100 || ts.Done+ts.Failed != ts.Emails {
			t.Errorf("finished task %s: progress %v (%d%%), %d+%d of %d", ts.ID, d.Metrics.Progress, d.Metrics.ProgressPercent, ts.Done, ts.Failed, ts.Emails)
		}
		if d.Metrics.LastCompletedAt == nil || *d.Metrics.LastCompletedAt != *d.FinishedAt {
			t.Errorf("task %s: last_verification_completed_at %v, finished_at %v", ts.ID, d.Metrics.LastCompletedAt, *d.FinishedAt)
		}
		if d.StartedAt == nil || len(d.Jobs) == 0 || len(d.Jobs) > 3 {
			t.Errorf("task %s detail: started_at %v, %d jobs", ts.ID, d.StartedAt, len(d.Jobs))
		}
	}
}

func TestExplicitTasks(t *testing.T) {
	t.Parallel()
	clk := newClock(t0)
	sim, srv := start(t, simulator.Config{Now: clk.Now})
	const user = "44444444-4444-4444-8444-444444444444"
	fin := t0.Add(-time.Minute)
	sim.AddTask(user, simulator.Task{ID: "bare", CreatedAt: t0.Add(-time.Hour), Emails: 10, Done: 10, Finished: true, OmitJobStatus: true})
	sim.AddTask(user, simulator.Task{ID: "full", CreatedAt: t0.Add(-2 * time.Hour), Emails: 4, Done: 1, Failed: 1,
		Results: map[string]int64{"valid": 1}, WebhookURL: "https://example.test/h", Source: "frontend"})
	sim.AddTask(user, simulator.Task{ID: "later", CreatedAt: t0.Add(time.Hour), Emails: 1})

	var bare taskJSON
	adminJSON(t, srv, user, "/tasks/bare", nil, &bare)
	if bare.Metrics.VerificationStatus != nil || bare.Metrics.JobStatus != nil || bare.FinishedAt != nil ||
		bare.Metrics.Progress != 1 || bare.Metrics.ProgressPercent != 100 || bare.WebhookURL != nil || bare.Source != "" {
		t.Errorf("bare task = %+v", bare)
	}

	var full taskJSON
	adminJSON(t, srv, user, "/tasks/full", nil, &full)
	wantJobs := map[string]int64{"pending": 2, "processing": 0, "completed": 1, "failed": 1}
	if !reflect.DeepEqual(full.Metrics.JobStatus, wantJobs) || full.Metrics.ProgressPercent != 50 ||
		full.Source != "frontend" || full.WebhookURL == nil || *full.WebhookURL != "https://example.test/h" {
		t.Errorf("full task = %+v", full)
	}

	sim.UpdateTask(user, "full", func(tk *simulator.Task) {
		tk.Done, tk.Failed, tk.Finished, tk.FinishedAt = 3, 1, true, &fin
		tk.Results["valid"], tk.Results["catchall"] = 2, 1
	})
	adminJSON(t, srv, user, "/tasks/full", nil, &full)
	if full.FinishedAt == nil || !parseStamp(t, *full.FinishedAt).Equal(fin) ||
		!reflect.DeepEqual(full.Metrics.VerificationStatus, map[string]int64{"valid": 2, "catchall": 1}) {
		t.Errorf("updated task = %+v", full)
	}

	// A generated task frozen by UpdateTask stops progressing.
	gen := sim.Users()[0]
	running := sim.Tasks(gen)[0]
	if running.Finished {
		t.Fatalf("newest generated task already finished: %+v", running)
	}
	sim.UpdateTask(gen, running.ID, func(*simulator.Task) {})

	if r := admin(t, srv, user, "/tasks/later", nil); r.status != http.StatusNotFound {
		t.Errorf("task created after now: status %d, want 404", r.status)
	}
	clk.Advance(2 * time.Hour)
	if r := admin(t, srv, user, "/tasks/later", nil); r.status != http.StatusOK {
		t.Errorf("task once the clock reached it: status %d, want 200", r.status)
	}
	if got := sim.Tasks(gen)[0]; got.Done != running.Done || got.Finished {
		t.Errorf("frozen task moved: %+v -> %+v", running, got)
	}

}

func TestTaskPagination(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Users: -1})
	const user = "55555555-5555-4555-8555-555555555555"
	var ids []string
	for i := range 25 {
		id := "task-" + itoa(100+i)
		created := t0.Add(-time.Duration(i) * time.Minute)
		if i == 24 {
			created = t0.Add(-23 * time.Minute) // ties with task-123: order by id
		}
		sim.AddTask(user, simulator.Task{ID: id, CreatedAt: created, Emails: 1})
		ids = append(ids, id)
	}
	want := ids // created newest first; the tie goes to the smaller id

	var got []string
	for _, off := range []int{0, 10, 20} {
		var page taskList
		adminJSON(t, srv, user, "/tasks", url.Values{"offset": {itoa(off)}}, &page)
		wantLen := min(10, 25-off)
		if page.Count != 25 || page.Limit != 10 || page.Offset != off || len(page.Tasks) != wantLen {
			t.Fatalf("offset %d: count %d limit %d offset %d with %d tasks", off, page.Count, page.Limit, page.Offset, len(page.Tasks))
		}
		for _, tk := range page.Tasks {
			got = append(got, tk.ID)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paged order %v, want %v", got, want)
	}

	var past taskList
	adminJSON(t, srv, user, "/tasks", url.Values{"offset": {"30"}, "limit": {"100"}}, &past)
	if past.Count != 25 || len(past.Tasks) != 0 {
		t.Errorf("past the end: count %d, %d tasks", past.Count, len(past.Tasks))
	}

	// Both bounds are exclusive.
	var win taskList
	adminJSON(t, srv, user, "/tasks", url.Values{
		"created_after":  {t0.Add(-5 * time.Minute).Format(time.RFC3339Nano)},
		"created_before": {t0.Add(-time.Minute).Format(time.RFC3339Nano)},
		"limit":          {"100"},
	}, &win)
	if win.Count != 3 || len(win.Tasks) != 3 || win.Tasks[0].ID != "task-102" || win.Tasks[2].ID != "task-104" {
		t.Errorf("created window: %+v", win)
	}

	bad := []struct {
		param, value string
	}{
		{"limit", "0"}, {"limit", "101"}, {"limit", "ten"}, {"limit", "-1"},
		{"offset", "-1"}, {"offset", "x"},
		{"created_after", "yesterday"}, {"created_before", "2026-03-10"},
	}
	for _, tc := range bad {
		r := admin(t, srv, user, "/tasks", url.Values{tc.param: {tc.value}})
		var e struct {
			Error  string            `json:"error"`
			Fields map[string]string `json:"fields"`
		}
		if err := json.Unmarshal(r.body, &e); err != nil || r.status != http.StatusBadRequest || e.Error == "" || e.Fields[tc.param] == "" {
			t.Errorf("%s=%s: status %d body %s, want 400 naming the field", tc.param, tc.value, r.status, r.body)
		}
	}
	for _, limit := range []string{"1", "100"} {
		if r := admin(t, srv, user, "/tasks", url.Values{"limit": {limit}}); r.status != http.StatusOK {
			t.Errorf("limit=%s: status %d", limit, r.status)
		}
	}
}

func TestOnRequestCanAddTaskMidPass(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Users: -1})
	const user = "66666666-6666-4666-8666-666666666666"
	sim.AddTask(user, simulator.Task{ID: "old", CreatedAt: t0.Add(-time.Hour), Emails: 1})
	type seen struct {
		user, path, offset string
	}
	calls := make(chan seen, 4)
	sim.OnRequest(func(userID, path string, q url.Values) {
		calls <- seen{userID, path, q.Get("offset")}
		if q.Get("offset") == "1" {
			sim.AddTask(userID, simulator.Task{ID: "new", CreatedAt: t0.Add(-time.Minute), Emails: 1})
		}
	})
	var p1, p2 taskList
	adminJSON(t, srv, user, "/tasks", url.Values{"limit": {"1"}, "offset": {"0"}}, &p1)
	adminJSON(t, srv, user, "/tasks", url.Values{"limit": {"1"}, "offset": {"1"}}, &p2)
	sim.OnRequest(nil)
	if p1.Count != 1 || p2.Count != 2 || p2.Tasks[0].ID != "old" {
		t.Errorf("pages: %+v then %+v; the task added mid-pass must shift the listing", p1, p2)
	}
	for _, want := range []seen{{user, "/api/v1/tasks", "0"}, {user, "/api/v1/tasks", "1"}} {
		if got := <-calls; got != want {
			t.Errorf("hook saw %+v, want %+v", got, want)
		}
	}
}
