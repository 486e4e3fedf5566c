package upstream

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/logging"
	"github.com/usage-sync/usage-sync/internal/simulator"
)

const (
	testAdmin  = "adm-0123456789-secret-admin-token"
	testSecret = "sec-0123456789-jwt-secret"
)

type fixture struct {
	sim  *simulator.Sim
	base string
	user string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	// No generated keys or tasks: each test adds exactly the data it asserts on.
	sim := simulator.New(simulator.Config{Seed: 1, Users: 2, KeysPerUser: -1, TasksPerUser: -1,
		AdminToken: testAdmin, JWTSecret: testSecret, RetryAfter: time.Second,
		Now: func() time.Time { return simNow }})
	return fixtureOf(t, sim)
}

// fixtureOf serves sim over HTTP for the test.
func fixtureOf(t *testing.T, sim *simulator.Sim) fixture {
	t.Helper()
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return fixture{sim: sim, base: srv.URL + "/api/v1", user: sim.Users()[0]}
}

// fastConfig retries in milliseconds so fault tests stay fast.
func (f fixture) fastConfig() Config {
	return Config{
		BaseURL:        f.base,
		AdminToken:     testAdmin,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     5 * time.Millisecond,
		MaxElapsed:     5 * time.Second,
		RequestTimeout: 5 * time.Second,
		Logger:         zap.NewNop(),
	}
}

func (f fixture) client(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want an *upstream.Error", err, err)
	}
	return e
}

func noSecrets(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{testAdmin, testSecret, "Bearer"} {
		if strings.Contains(s, secret) {
			t.Errorf("%q leaks %q", s, secret)
		}
	}
}

var (
	day    = time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	simNow = day.Add(24 * time.Hour)
)

func TestAdminModeScopesToUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := f.sim.Users()[1]
	f.sim.AddKey(f.user, simulator.Key{ID: "key-mine", Name: "Mine", Purpose: "google_sheets", CreatedAt: day})
	f.sim.AddKey(other, simulator.Key{ID: "key-theirs", Name: "Theirs", Purpose: "zapier", CreatedAt: day})
	f.sim.AddRequests(f.user, "key-mine", day.Add(time.Hour), day.Add(2*time.Hour))
	c := f.client(t, f.fastConfig())

	list, err := c.ListKeys(context.Background(), f.user, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mine *Key
	for i, k := range list.Keys {
		if k.ID == "key-theirs" {
			t.Fatal("admin listing for one user returned another user's key: user_id not sent")
		}
		if k.ID == "key-mine" {
			mine = &list.Keys[i]
		}
	}
	if mine == nil {
		t.Fatalf("key-mine not listed: %+v", list.Keys)
	}
	if mine.Purpose != PurposeGoogleSheets || mine.TotalRequests == nil || *mine.TotalRequests != 2 {
		t.Errorf("key-mine = purpose %q, total %v; want google sheets, 2", mine.Purpose, mine.TotalRequests)
	}
}

func TestJWTMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.AddKey(f.user, simulator.Key{ID: "key-jwt", Name: "J", Purpose: "n8n", CreatedAt: day})
	cfg := f.fastConfig()
	cfg.AdminToken, cfg.JWTSecret = "", testSecret
	c := f.client(t, cfg)

	list, err := c.ListKeys(context.Background(), f.user, nil, nil)
	if err != nil {
		t.Fatalf("a JWT signed with the secret was refused: %v", err)
	}
	found := false
	for _, k := range list.Keys {
		found = found || k.ID == "key-jwt"
	}
	if !found {
		t.Errorf("key-jwt not listed for the JWT's subject: %+v", list.Keys)
	}

	cfg.JWTSecret = "not-the-secret"
	_, err = f.client(t, cfg).ListKeys(context.Background(), f.user, nil, nil)
	if e := asError(t, err); e.Kind != KindAuth || e.Attempts != 1 {
		t.Errorf("wrong secret: kind %v after %d attempts, want auth after 1", e.Kind, e.Attempts)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fault    simulator.Fault
		wantErr  Kind
		wantHits int // 0: at least 2
	}{
		{name: "500 twice then success", fault: simulator.Fault{Status: 500, Times: 2}, wantHits: 3},
		{name: "502 once then success", fault: simulator.Fault{Status: 502, Times: 1}, wantHits: 2},
		{name: "408 once then success", fault: simulator.Fault{Status: 408, Times: 1}, wantHits: 2},
		{name: "401 is not retried", fault: simulator.Fault{Status: 401}, wantErr: KindAuth, wantHits: 1},
		{name: "403 is not retried", fault: simulator.Fault{Status: 403}, wantErr: KindAuth, wantHits: 1},
		{name: "400 is not retried", fault: simulator.Fault{Status: 400}, wantErr: KindPermanent, wantHits: 1},
		{name: "404 is not retried", fault: simulator.Fault{Status: 404}, wantErr: KindPermanent, wantHits: 1},
		{name: "bad JSON is not retried", fault: simulator.Fault{BadJSON: true}, wantErr: KindDecode, wantHits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			tt.fault.Path = "/api-keys"
			f.sim.SetFault(f.user, tt.fault)
			c := f.client(t, f.fastConfig())

			_, err := c.ListKeys(context.Background(), f.user, nil, nil)
			if hits := f.sim.Hits("/api-keys"); hits != tt.wantHits {
				t.Errorf("hits = %d, want %d", hits, tt.wantHits)
			}
			if tt.wantErr == 0 {
				if err != nil {
					t.Fatalf("want success after retries, got %v", err)
				}
				return
			}
			e := asError(t, err)
			if e.Kind != tt.wantErr || KindOf(err) != tt.wantErr || e.Attempts != 1 {
				t.Errorf("kind %v after %d attempts, want %v after 1: %v", e.Kind, e.Attempts, tt.wantErr, err)
			}
			if e.Path != "/api/v1/api-keys" || e.UserID != f.user || e.Op != "list keys" {
				t.Errorf("error context = op %q path %q user %q", e.Op, e.Path, e.UserID)
			}
			noSecrets(t, err.Error())
		})
	}
}

func TestBadJSONNamesTheProblem(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.SetFault(f.user, simulator.Fault{BadJSON: true, Path: "/tasks"})
	c := f.client(t, f.fastConfig())
	_, err := c.ListTasks(context.Background(), f.user, TaskQuery{Limit: 10})
	e := asError(t, err)
	if e.Kind != KindDecode || e.Status != http.StatusOK {
		t.Fatalf("kind %v status %d, want decode 200: %v", e.Kind, e.Status, err)
	}
	if !strings.Contains(e.Message, "JSON") || !strings.Contains(err.Error(), e.Message) {
		t.Errorf("message %q does not name the JSON problem (error %q)", e.Message, err)
	}
}

// retrying503s is a fixture whose task listing always answers 503, a client configuration that
// gives up after 80 ms of retries, and a debug logger writing to logs.
func retrying503s(t *testing.T) (fixture, Config, *bytes.Buffer, *zap.Logger) {
	t.Helper()
	f := newFixture(t)
	f.sim.SetFault(f.user, simulator.Fault{Status: 503, Path: "/tasks"})
	logs := new(bytes.Buffer)
	log, err := logging.New(logs, "debug")
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.fastConfig()
	cfg.MaxElapsed = 80 * time.Millisecond
	return f, cfg, logs, log
}

// TestRetryLoggedWithoutContextLogger: a call whose context lacks logging.WithLogger still logs
// its retries, to the client's own logger.
func TestRetryLoggedWithoutContextLogger(t *testing.T) {
	t.Parallel()
	f, cfg, logs, log := retrying503s(t)
	cfg.Logger = log
	_, err := f.client(t, cfg).ListTasks(context.Background(), f.user, TaskQuery{})
	e := asError(t, err)
	if got := strings.Count(logs.String(), `"event":"upstream.retry"`); e.Attempts < 2 || got != e.Attempts-1 {
		t.Fatalf("%d upstream.retry lines on the client's logger for %d attempts:\n%s", got, e.Attempts, logs.String())
	}
}

func TestRetryBudgetExhausted(t *testing.T) {
	t.Parallel()
	f, cfg, logs, log := retrying503s(t)
	c := f.client(t, cfg)

	_, err := c.ListTasks(logging.WithLogger(context.Background(), log), f.user, TaskQuery{})
	e := asError(t, err)
	if e.Kind != KindRetryable || e.Status != 503 {
		t.Errorf("kind %v status %d, want retryable 503", e.Kind, e.Status)
	}
	hits := f.sim.Hits("/tasks")
	if e.Attempts < 2 || e.Attempts != hits {
		t.Errorf("attempts = %d, hits = %d; want equal and at least 2", e.Attempts, hits)
	}
	if !strings.Contains(err.Error(), "attempts)") {
		t.Errorf("error %q does not report attempts", err)
	}
	retries := strings.Count(logs.String(), `"event":"upstream.retry"`)
	if retries != e.Attempts-1 {
		t.Errorf("%d upstream.retry lines for %d attempts", retries, e.Attempts)
	}
	for _, field := range []string{`"op":"list tasks"`, `"path":"/api/v1/tasks"`, `"status":503`, `"attempt":1`, `"wait":`} {
		if !strings.Contains(logs.String(), field) {
			t.Errorf("retry log lacks %s: %s", field, logs.String())
		}
	}
	noSecrets(t, logs.String())
	noSecrets(t, err.Error())
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.SetFault(f.user, simulator.Fault{Status: 429, Times: 1, RetryAfter: time.Second, Path: "/tasks"})
	c := f.client(t, f.fastConfig())

	start := time.Now()
	_, err := c.ListTasks(context.Background(), f.user, TaskQuery{})
	if err != nil {
		t.Fatalf("429 then success: %v", err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("retried after %s, before the 1s Retry-After", took)
	}
	if hits := f.sim.Hits("/tasks"); hits != 2 {
		t.Errorf("hits = %d, want 2", hits)
	}
}

func TestRetryAfterCappedAndBudget(t *testing.T) {
	t.Parallel()
	t.Run("cap", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.sim.SetFault(f.user, simulator.Fault{Status: 429, Times: 2, RetryAfter: time.Second, Path: "/tasks"})
		cfg := f.fastConfig()
		cfg.MaxRetryAfter = 10 * time.Millisecond
		start := time.Now()
		if _, err := f.client(t, cfg).ListTasks(context.Background(), f.user, TaskQuery{}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took >= time.Second {
			t.Errorf("took %s: the Retry-After cap was not applied", took)
		}
		if hits := f.sim.Hits("/tasks"); hits != 3 {
			t.Errorf("hits = %d, want 3", hits)
		}
	})
	t.Run("wait beyond budget", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.sim.SetFault(f.user, simulator.Fault{Status: 429, RetryAfter: time.Second, Path: "/tasks"})
		cfg := f.fastConfig()
		cfg.MaxElapsed = 200 * time.Millisecond
		start := time.Now()
		_, err := f.client(t, cfg).ListTasks(context.Background(), f.user, TaskQuery{})
		e := asError(t, err)
		if e.Kind != KindRateLimited || e.RetryAfter != time.Second || e.Attempts != 1 {
			t.Errorf("kind %v retry-after %s attempts %d, want rate_limited 1s 1", e.Kind, e.RetryAfter, e.Attempts)
		}
		if took := time.Since(start); took >= time.Second {
			t.Errorf("took %s: waited although the wait could not fit the budget", took)
		}
	})
}

func TestContextCancelStopsPromptly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.SetFault(f.user, simulator.Fault{Delay: 30 * time.Second, Path: "/api-keys"})
	// The hook runs in the handler before the delay: the request has reached the server.
	started := make(chan struct{})
	var once sync.Once
	f.sim.OnRequest(func(string, string, url.Values) { once.Do(func() { close(started) }) })
	c := f.client(t, f.fastConfig())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.ListKeys(ctx, f.user, nil, nil)
		done <- err
	}()
	<-started
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want one that is context.Canceled", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("returned %s after cancel", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListKeys did not return after cancel")
	}
	if hits := f.sim.Hits("/api-keys"); hits != 1 {
		t.Errorf("hits = %d, want 1: a cancelled call must not retry", hits)
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.SetFault(f.user, simulator.Fault{Delay: 30 * time.Second, Times: 1, Path: "/metrics/api-usage"})
	cfg := f.fastConfig()
	cfg.RequestTimeout = 100 * time.Millisecond
	if _, err := f.client(t, cfg).APIUsage(context.Background(), f.user, nil, nil); err != nil {
		t.Fatalf("a timed-out attempt was not retried: %v", err)
	}
	if hits := f.sim.Hits("/metrics/api-usage"); hits != 2 {
		t.Errorf("hits = %d, want 2", hits)
	}
}

func TestTimestampsSentAtFullPrecision(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.AddKey(f.user, simulator.Key{ID: "key-ns", Name: "ns", Purpose: "custom", CreatedAt: day})
	base := day.Add(5 * time.Hour)
	f.sim.AddRequests(f.user, "key-ns", base.Add(100), base.Add(200), base.Add(300), base.Add(400))
	// A range that holds only the requests at +200 ns and +300 ns: bounds cut to whole
	// seconds would count none of them.
	zone := time.FixedZone("X", 3*3600)
	from, to := base.Add(150).In(zone), base.Add(350).In(zone)
	if want := f.sim.KeyRequests(f.user, "key-ns", from, to); want != 2 {
		t.Fatalf("simulator counts %d in range, want 2", want)
	}
	var mu sync.Mutex
	var sent []url.Values
	f.sim.OnRequest(func(_, _ string, q url.Values) { mu.Lock(); sent = append(sent, q); mu.Unlock() })
	c := f.client(t, f.fastConfig())

	list, err := c.ListKeys(context.Background(), f.user, &from, &to)
	if err != nil {
		t.Fatal(err)
	}
	var got *int64
	for _, k := range list.Keys {
		if k.ID == "key-ns" {
			got = k.TotalRequests
		}
	}
	if got == nil || *got != 2 {
		t.Errorf("range total = %v, want 2", got)
	}
	usage, err := c.APIUsage(context.Background(), f.user, &from, &to)
	if err != nil {
		t.Fatal(err)
	}
	if usage.RequestsByPurpose["custom"] != 2 {
		t.Errorf("requests_by_purpose = %v, want custom: 2", usage.RequestsByPurpose)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, q := range sent {
		if q.Get("from") != "2026-03-10T05:00:00.00000015Z" || q.Get("to") != "2026-03-10T05:00:00.00000035Z" {
			t.Errorf("sent from=%q to=%q, want UTC at full precision", q.Get("from"), q.Get("to"))
		}
	}
	if len(sent) != 2 {
		t.Errorf("%d requests seen, want 2", len(sent))
	}
}

func TestTasks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	fin := day.Add(2 * time.Hour)
	f.sim.AddTask(f.user, simulator.Task{ID: "t-done", CreatedAt: day.Add(time.Hour), Emails: 4, Done: 3, Failed: 1,
		Finished: true, FinishedAt: &fin, Results: map[string]int64{"valid": 2, "invalid": 1, "role_based": 1}, Source: "api_key"})
	f.sim.AddTask(f.user, simulator.Task{ID: "t-run", CreatedAt: day.Add(3*time.Hour + 500), Emails: 5, Done: 1})
	f.sim.AddTask(f.user, simulator.Task{ID: "t-old", CreatedAt: day.Add(-time.Hour), Emails: 2, Done: 2, Finished: true, OmitJobStatus: true})
	c := f.client(t, f.fastConfig())

	after, before := day, day.Add(3*time.Hour+501)
	seen := map[string]Task{}
	q := TaskQuery{CreatedAfter: &after, CreatedBefore: &before, Limit: 1}
	for {
		page, err := c.ListTasks(context.Background(), f.user, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range page.Tasks {
			seen[task.ID] = task
		}
		q.Offset += len(page.Tasks) + page.Dropped
		if len(page.Tasks)+page.Dropped == 0 || q.Offset >= page.Count {
			break
		}
	}
	if len(seen) != 2 || seen["t-old"].ID != "" {
		t.Fatalf("listed %v, want t-done and t-run only", keys(seen))
	}
	done, run := seen["t-done"], seen["t-run"]
	// What these tasks' status and billable count are: internal/usage's TestRulesOverTheClient.
	if done.Source != "api_key" {
		t.Errorf("t-done: source %q", done.Source)
	}
	if run.CreatedAt == nil || run.CreatedAt.Nanosecond() != 500 {
		t.Errorf("t-run created_at %v lost its nanoseconds", run.CreatedAt)
	}
}

func keys(m map[string]Task) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNoTokenInErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.fastConfig()
	cfg.AdminToken = "wrong-" + testAdmin // refused, and itself a secret
	_, err := f.client(t, cfg).ListKeys(context.Background(), f.user, nil, nil)
	e := asError(t, err)
	if e.Kind != KindAuth || f.sim.Hits("/api-keys") != 1 {
		t.Errorf("kind %v hits %d, want auth after 1 hit", e.Kind, f.sim.Hits("/api-keys"))
	}
	noSecrets(t, err.Error())
	if strings.Contains(err.Error(), cfg.AdminToken) {
		t.Errorf("error %q leaks the refused token", err)
	}

	// A network error quotes no URL, so neither the query nor the host leaks.
	cfg.BaseURL = "http://127.0.0.1:1/api/v1"
	cfg.MaxElapsed = 20 * time.Millisecond
	_, err = f.client(t, cfg).ListKeys(context.Background(), f.user, nil, nil)
	if e := asError(t, err); e.Kind != KindRetryable || e.Status != 0 || e.Err == nil {
		t.Errorf("network error: %+v", e)
	}
	if strings.Contains(err.Error(), "user_id=") {
		t.Errorf("error %q quotes the request URL", err)
	}
}

func TestConcurrentUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.fastConfig()
	cfg.AdminToken, cfg.JWTSecret = "", testSecret
	c := f.client(t, cfg)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.ListKeys(context.Background(), f.sim.Users()[i%2], nil, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
		path    string
	}{
		{name: "ok", cfg: Config{BaseURL: "https://api.example.com/api/v1", AdminToken: "t"}, path: "/api/v1"},
		{name: "trailing slash", cfg: Config{BaseURL: "https://api.example.com/api/v1/", JWTSecret: "s"}, path: "/api/v1"},
		{name: "empty", cfg: Config{AdminToken: "t"}, wantErr: "empty"},
		{name: "relative", cfg: Config{BaseURL: "/api/v1", AdminToken: "t"}, wantErr: "absolute"},
		{name: "ftp", cfg: Config{BaseURL: "ftp://x/api/v1", AdminToken: "t"}, wantErr: "absolute"},
		{name: "credentials", cfg: Config{BaseURL: "https://bob:hunter2@x/api/v1", AdminToken: "t"}, wantErr: "credentials"},
		{name: "no auth", cfg: Config{BaseURL: "https://x/api/v1"}, wantErr: "admin token or a JWT secret"},
		{name: "negative", cfg: Config{BaseURL: "https://x/api/v1", AdminToken: "t", MaxElapsed: -time.Second}, wantErr: "negative"},
	}
	if _, err := New(Config{BaseURL: "https://api.example.com/api/v1", AdminToken: "t"}); err == nil || !strings.Contains(err.Error(), "Config.Logger") {
		t.Errorf("New without a logger: err = %v, want it refused (a retry would go unlogged)", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.Logger = zap.NewNop()
			c, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q leaks the URL's password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.basePath != tt.path || c.cfg.MaxElapsed != MaxElapsedDefault || c.cfg.UserAgent != UserAgentDefault {
				t.Errorf("basePath %q, MaxElapsed %s, UserAgent %q", c.basePath, c.cfg.MaxElapsed, c.cfg.UserAgent)
			}
		})
	}
}
