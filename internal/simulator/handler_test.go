package simulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
)

type errorJSON struct {
	Error  string            `json:"error"`
	Fields map[string]string `json:"fields"`
}

func TestAuth(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Seed: 5})
	users := sim.Users()
	alice, bob := users[0], users[1]
	const stranger = "99999999-9999-4999-8999-999999999999"
	future := time.Now().Add(time.Hour)

	tests := []struct {
		name      string
		auth      string
		userID    string
		status    int
		wantError string // "" on success
		wantField string
	}{
		{"admin for a user", "Bearer " + adminToken, alice, 200, "", ""},
		{"admin, lower-case scheme", "bearer " + adminToken, alice, 200, "", ""},
		{"admin without user_id", "Bearer " + adminToken, "", 400, "invalid request", "user_id"},
		{"admin for an unknown user", "Bearer " + adminToken, stranger, 404, "user not found", ""},
		{"JWT, no user_id", "Bearer " + mintJWT(t, jwtSecret, alice, "authenticated", future), "", 200, "", ""},
		{"JWT, own user_id", "Bearer " + mintJWT(t, jwtSecret, alice, "authenticated", future), alice, 200, "", ""},
		{"JWT, another user_id", "Bearer " + mintJWT(t, jwtSecret, alice, "authenticated", future), bob, 403, "forbidden", ""},
		{"JWT of an unknown user", "Bearer " + mintJWT(t, jwtSecret, stranger, "authenticated", future), "", 404, "user not found", ""},
		{"JWT, wrong secret", "Bearer " + mintJWT(t, "not-the-secret", alice, "authenticated", future), "", 401, "invalid token", ""},
		{"JWT, wrong audience", "Bearer " + mintJWT(t, jwtSecret, alice, "anon", future), "", 401, "invalid token", ""},
		{"JWT, expired", "Bearer " + mintJWT(t, jwtSecret, alice, "authenticated", time.Now().Add(-time.Minute)), "", 401, "invalid token", ""},
		{"raw admin token without Bearer", adminToken, alice, 401, "invalid token", ""},
		{"raw JWT without Bearer", mintJWT(t, jwtSecret, alice, "authenticated", future), "", 401, "invalid token", ""},
		{"no header", "", alice, 401, "invalid token", ""},
		{"unknown token", "Bearer nope", alice, 401, "invalid token", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := url.Values{}
			if tc.userID != "" {
				q.Set("user_id", tc.userID)
			}
			r, err := call(t, context.Background(), srv, tc.auth, "/api-keys", q)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if tc.wantError == "" {
				var l keyList
				if err := json.Unmarshal(r.body, &l); err != nil || l.Count != len(sim.Keys(alice)) {
					t.Errorf("body %s is not alice's key listing", r.body)
				}
				return
			}
			var e errorJSON
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error != tc.wantError {
				t.Errorf("body %s, want error %q", r.body, tc.wantError)
			}
			if tc.wantField != "" && e.Fields[tc.wantField] == "" {
				t.Errorf("body %s does not name field %q", r.body, tc.wantField)
			}
			if strings.Contains(string(r.body), adminToken) || strings.Contains(string(r.body), jwtSecret) {
				t.Errorf("body %s leaks a secret", r.body)
			}
		})
	}

	// Another user's task is not found, whoever asks.
	task := sim.Tasks(bob)[0].ID
	aliceJWT := "Bearer " + mintJWT(t, jwtSecret, alice, "authenticated", future)
	if r, err := call(t, context.Background(), srv, aliceJWT, "/tasks/"+task, nil); err != nil ||
		r.status != http.StatusNotFound || !strings.Contains(string(r.body), "task not found") {
		t.Errorf("alice reading bob's task: %d %s %v", r.status, r.body, err)
	}
	if r := admin(t, srv, alice, "/tasks/"+task, nil); r.status != http.StatusNotFound {
		t.Errorf("admin for alice reading bob's task: %d", r.status)
	}
	if r := admin(t, srv, bob, "/tasks/"+task, nil); r.status != http.StatusOK {
		t.Errorf("admin for bob reading bob's task: %d", r.status)
	}
}

func TestNoCredentialsConfigured(t *testing.T) {
	t.Parallel()
	sim := simulator.New(simulator.Config{Now: newClock(t0).Now})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	q := url.Values{"user_id": {sim.Users()[0]}}
	for _, auth := range []string{"Bearer ", "Bearer x", "Bearer " + mintJWT(t, "", sim.Users()[0], "authenticated", time.Now().Add(time.Hour))} {
		r, err := call(t, context.Background(), srv, auth, "/api-keys", q)
		if err != nil || r.status != http.StatusUnauthorized {
			t.Errorf("auth %q without configured credentials: %d %v", auth, r.status, err)
		}
	}
}

func TestBadTimestamps(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{})
	user := sim.Users()[0]
	for _, path := range []string{"/api-keys", "/metrics/api-usage"} {
		r := admin(t, srv, user, path, url.Values{"from": {"yesterday"}, "to": {"2026-03-10T00:00:00.5Z"}})
		var e errorJSON
		if err := json.Unmarshal(r.body, &e); err != nil || r.status != 400 || e.Fields["from"] == "" || e.Fields["to"] != "" {
			t.Errorf("%s with a bad from: %d %s", path, r.status, r.body)
		}
	}
}

func TestUserFaults(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{Seed: 9})
	users := sim.Users()
	task := sim.Tasks(users[0])[0].ID

	type step struct {
		path       string
		status     int
		retryAfter string // checked when status is 429
		badJSON    bool
	}
	tests := []struct {
		name  string
		fault simulator.Fault
		steps []step
	}{
		{"500 twice, then healed", simulator.Fault{Status: 500, Times: 2}, []step{
			{"/api-keys", 500, "", false}, {"/tasks", 500, "", false}, {"/api-keys", 200, "", false},
		}},
		{"429 with Retry-After", simulator.Fault{Status: 429, Times: 1, RetryAfter: 3 * time.Second}, []step{
			{"/tasks", 429, "3", false}, {"/tasks", 200, "", false},
		}},
		{"401 on every request", simulator.Fault{Status: 401}, []step{
			{"/api-keys", 401, "", false}, {"/metrics/api-usage", 401, "", false}, {"/tasks/" + task, 401, "", false},
		}},
		{"bad JSON", simulator.Fault{BadJSON: true, Times: 1}, []step{
			{"/api-keys", 200, "", true}, {"/api-keys", 200, "", false},
		}},
		{"only matching paths", simulator.Fault{Status: 500, Path: "/tasks"}, []step{
			{"/api-keys", 200, "", false}, {"/tasks", 500, "", false}, {"/tasks/" + task, 500, "", false}, {"/metrics/api-usage", 200, "", false},
		}},
		{"delay, then answer", simulator.Fault{Delay: time.Millisecond, Times: 1}, []step{
			{"/api-keys", 200, "", false},
		}},
	}
	// Sequential: each case uses the same user's fault slot.
	for _, tc := range tests {
		sim.SetFault(users[0], tc.fault)
		for i, st := range tc.steps {
			r := admin(t, srv, users[0], st.path, nil)
			if r.status != st.status {
				t.Errorf("%s, step %d (%s): status %d, want %d; body %s", tc.name, i, st.path, r.status, st.status, r.body)
				continue
			}
			if st.status == 429 && r.header.Get("Retry-After") != st.retryAfter {
				t.Errorf("%s, step %d: Retry-After %q, want %q", tc.name, i, r.header.Get("Retry-After"), st.retryAfter)
			}
			if json.Valid(r.body) == st.badJSON {
				t.Errorf("%s, step %d: body valid JSON = %v, want %v: %s", tc.name, i, !st.badJSON, st.badJSON, r.body)
			}
			// Other users never feel the fault (the task belongs to users[0]).
			if !strings.HasPrefix(st.path, "/tasks/") {
				if o := admin(t, srv, users[1], st.path, nil); o.status != 200 {
					t.Errorf("%s: other user got %d on %s", tc.name, o.status, st.path)
				}
			}
		}
		sim.ClearFault(users[0])
	}
	if r := admin(t, srv, users[0], "/api-keys", nil); r.status != 200 {
		t.Errorf("after ClearFault: %d", r.status)
	}
}

func TestHitsCountRetries(t *testing.T) {
	t.Parallel()
	sim, srv := start(t, simulator.Config{})
	user := sim.Users()[0]
	sim.SetFault(user, simulator.Fault{Status: 500, Times: 2, Path: "/metrics"})
	for range 3 {
		admin(t, srv, user, "/metrics/api-usage", nil)
	}
	admin(t, srv, user, "/api-keys", nil)
	admin(t, srv, user, "/tasks", nil)
	admin(t, srv, user, "/tasks/"+sim.Tasks(user)[0].ID, nil)
	for path, want := range map[string]int{"/metrics/api-usage": 3, "/api-keys": 1, "/tasks": 2, "/tasks/": 1, "/api/v1": 6, "/nothing": 0} {
		if got := sim.Hits(path); got != want {
			t.Errorf("Hits(%q) = %d, want %d", path, got, want)
		}
	}
}

// A delay ends as soon as the client goes away: the server closes promptly instead of
// waiting out the hour.
func TestDelaysRespectCancellation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   simulator.Config
		fault simulator.Fault // set on the user when it has a Delay
	}{
		{"latency", simulator.Config{Latency: time.Hour}, simulator.Fault{}},
		{"fault delay", simulator.Config{}, simulator.Fault{Delay: time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim, srv := start(t, tc.cfg)
			user := sim.Users()[0]
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.fault.Delay > 0 {
				sim.SetFault(user, tc.fault)
			}
			// The hook runs in the handler before either delay, so the cancellation
			// certainly reaches a handler that is about to wait.
			arrived := make(chan struct{})
			sim.OnRequest(func(string, string, url.Values) {
				close(arrived)
				cancel()
			})
			_, err := call(t, ctx, srv, "Bearer "+adminToken, "/api-keys", url.Values{"user_id": {user}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("request error %v, want context.Canceled", err)
			}
			<-arrived
			closed := make(chan struct{})
			go func() { srv.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("server still busy with a cancelled request: the delay ignored the context")
			}
		})
	}
}

func TestGlobalRateLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter time.Duration
		want       string
	}{
		{"default", 0, "1"},
		{"whole seconds", 2500 * time.Millisecond, "2"},
		{"sub-second", 300 * time.Millisecond, "0"},
		{"negative", -time.Second, "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim, srv := start(t, simulator.Config{RateLimitEvery: 3, RetryAfter: tc.retryAfter})
			user := sim.Users()[0]
			var statuses []int
			for range 6 {
				r := admin(t, srv, user, "/tasks", nil)
				statuses = append(statuses, r.status)
				if r.status == 429 && r.header.Get("Retry-After") != tc.want {
					t.Errorf("Retry-After %q, want %q", r.header.Get("Retry-After"), tc.want)
				}
			}
			want := []int{200, 200, 429, 200, 200, 429}
			for i := range want {
				if statuses[i] != want[i] {
					t.Fatalf("statuses %v, want %v", statuses, want)
				}
			}
		})
	}
}

func TestErrorRateIsSeeded(t *testing.T) {
	t.Parallel()
	run := func(rate float64) []int {
		sim, srv := start(t, simulator.Config{Seed: 21, ErrorRate: rate})
		user := sim.Users()[0]
		var out []int
		for range 40 {
			out = append(out, admin(t, srv, user, "/api-keys", nil).status)
		}
		return out
	}
	a, b := run(0.5), run(0.5)
	fails := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("one seed, sequential requests: %v vs %v", a, b)
		}
		if a[i] == 500 {
			fails++
		}
	}
	if fails == 0 || fails == len(a) {
		t.Errorf("error rate 0.5 failed %d of %d requests", fails, len(a))
	}
	for _, s := range run(1) {
		if s != 500 {
			t.Fatalf("error rate 1 answered %d", s)
		}
	}
}
