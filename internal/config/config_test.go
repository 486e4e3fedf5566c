package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/health"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// helperVar marks the child process load starts.
const helperVar = "USAGE_SYNC_CONFIG_HELPER"

// load runs Load in a child process (this test binary, in TestLoadHelper) whose environment is
// exactly vars, and returns what it decoded. envconfig reads the process environment; a child
// per case keeps the tests parallel, and the parent's own environment out of them.
func load(t *testing.T, vars map[string]string) (Config, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadHelper$", "-test.count=1")
	// The race detector's exit otherwise sleeps a second, per child.
	cmd.Env = []string{helperVar + "=1", "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	if v, ok := os.LookupEnv("GOCOVERDIR"); ok {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+v)
	}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Load in a child process: %v\n%s", err, out)
	}
	_, js, ok := bytes.Cut(out, []byte(helperVar+":"))
	if !ok {
		t.Fatalf("the child printed no result:\n%s", out)
	}
	var r loaded
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatalf("decode the child's result: %v\n%s", err, out)
	}
	if r.Err != "" {
		return r.Config, errors.New(r.Err)
	}
	return r.Config, nil
}

// loaded is what TestLoadHelper reports of Load.
type loaded struct {
	Config Config
	Err    string
}

// TestLoadHelper is load's child: it runs Load on its own environment and prints the result.
func TestLoadHelper(t *testing.T) {
	if os.Getenv(helperVar) != "1" {
		t.Skip("runs only as the child process of load")
	}
	c, err := Load()
	r := loaded{Config: c}
	if err != nil {
		r.Err = err.Error()
	}
	js, jerr := json.Marshal(r)
	if jerr != nil {
		t.Fatal(jerr)
	}
	fmt.Printf("%s:%s\n", helperVar, js)
	os.Exit(0)
}

// valid is a minimal environment that validates for syncing.
func valid() map[string]string {
	return map[string]string{
		"DATABASE_URL":         "postgres://app:s3cret-pw@db.internal:5432/postgres",
		"UPSTREAM_BASE_URL":    "https://api.example.com/api/v1",
		"UPSTREAM_ADMIN_TOKEN": "admin-tok-123",
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	m := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// readExample returns config.example.env's assignments, quotes stripped as a shell would.
func readExample(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "config.example.env"))
	if err != nil {
		t.Fatalf("open example: %v", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("example line %q is not KEY=VALUE", line)
		}
		if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if _, dup := out[k]; dup {
			t.Fatalf("example sets %s twice", k)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read example: %v", err)
	}
	return out
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	got, err := load(t, nil)
	if err != nil {
		t.Fatalf("Load(empty): %v", err)
	}
	want := Config{
		DBPoolMode:         "auto",
		UpstreamJWTTTL:     5 * time.Minute,
		UpstreamTimeout:    30 * time.Second,
		UpstreamRetryMax:   2 * time.Minute,
		UpstreamRetryAfter: 60 * time.Second,
		SyncSchedule:       "*/5 * * * *",
		SyncConcurrency:    4,
		SyncLeaseTTL:       2 * time.Minute,
		SyncUserTimeout:    10 * time.Minute,
		FailureBackoffBase: time.Minute,
		FailureBackoffMax:  time.Hour,
		SettleLag:          2 * time.Hour,
		MaxBackfillDays:    7,
		TaskOverlap:        10 * time.Minute,
		RevisionWindow:     24 * time.Hour,
		RevisionInterval:   time.Hour,
		TriggerMinInterval: 30 * time.Second,
		MetricsAddr:        "", // the daemon's :9464, none for --once (MetricsListen)
		SyncRequestPoll:    5 * time.Second,
		LogLevel:           "info",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadDecodes(t *testing.T) {
	t.Parallel()
	got, err := load(t, map[string]string{
		"DB_MAX_CONNS":      "0x10", // envconfig parses integers with base prefixes
		"SYNC_ENABLED":      "1",
		"CHARGE_ENABLED":    "TRUE",
		"SYNC_LEASE_TTL":    "30s",
		"SETTLE_LAG":        "1h30m",
		"SYNC_SCHEDULE":     "@every 1m",
		"WORKER_ID":         "w-1",
		"CHARGE_FROM":       "2026-01-02T03:04:05.123456789Z",
		"MAX_BACKFILL_DAYS": "30",
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.DBMaxConns != 16 || !got.SyncEnabled || !got.ChargeEnabled || got.SyncLeaseTTL != 30*time.Second || got.SettleLag != 90*time.Minute ||
		got.SyncSchedule != "@every 1m" || got.WorkerID != "w-1" || got.MaxBackfillDays != 30 {
		t.Fatalf("decoded %+v", got)
	}
	if got.ChargeFrom == nil || got.ChargeFrom.Nanosecond() != 123456789 ||
		!got.ChargeFrom.Equal(time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)) {
		t.Fatalf("CHARGE_FROM = %v, want 2026-01-02T03:04:05.123456789Z at full precision", got.ChargeFrom)
	}
}

func TestChargeFromOffsetKeepsInstant(t *testing.T) {
	t.Parallel()
	got, err := load(t, map[string]string{"CHARGE_FROM": "2026-01-02T05:04:05.000000001+02:00"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 1, time.UTC); !got.ChargeFrom.Equal(want) {
		t.Fatalf("CHARGE_FROM = %v, want %v", got.ChargeFrom, want)
	}
}

func TestEmptyMeansDefault(t *testing.T) {
	t.Parallel()
	m := with(valid(), "SYNC_CONCURRENCY", "", "SYNC_SCHEDULE", "", "CHARGE_FROM", "", "SYNC_ENABLED", "", "LOG_LEVEL", "")
	c, err := load(t, m)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.SyncConcurrency != 4 || c.SyncSchedule != "*/5 * * * *" || c.ChargeFrom != nil || c.SyncEnabled || c.LogLevel != "info" {
		t.Fatalf("empty values did not take defaults: %+v", c)
	}
	if err := c.Validate(ModeSync); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	// DATABASE_URL is required: empty is missing, not a default.
	c, err = load(t, with(valid(), "DATABASE_URL", ""))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Validate(ModeMigrate); err == nil || !strings.Contains(err.Error(), "DATABASE_URL is empty") {
		t.Fatalf("Validate(empty DATABASE_URL) = %v, want DATABASE_URL is empty", err)
	}
}

func TestLoadBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, want string
	}{
		{"DB_MAX_CONNS", "eight", "is not a whole number"},
		{"SYNC_CONCURRENCY", "4.5", "is not a whole number"},
		{"MAX_BACKFILL_DAYS", "7d", "is not a whole number"},
		{"SYNC_ENABLED", "yes", "is not a boolean"},
		{"CHARGE_ENABLED", "on", "is not a boolean"},
		{"SYNC_LEASE_TTL", "120", "is not a duration"},
		{"SETTLE_LAG", "2 hours", "is not a duration"},
		{"CHARGE_FROM", "2026-01-01", "is not an RFC 3339 timestamp"},
		{"CHARGE_FROM", "2026-01-01 00:00:00Z", "is not an RFC 3339 timestamp"},
		{"UPSTREAM_RATE_LIMIT", "100/s", "is not a number"},
		{"UPSTREAM_RATE_LIMIT", "NaN", "is not a number"},
		{"UPSTREAM_RATE_LIMIT", "+Inf", "is not a number"},
		{"UPSTREAM_MAX_INFLIGHT", "32.5", "is not a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			c, err := load(t, with(valid(), tt.name, tt.value))
			if err == nil {
				t.Fatalf("Load accepted %s=%q", tt.name, tt.value)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.name+" ") || !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.value) {
				t.Fatalf("error %q should name %s, quote %q and say %q", msg, tt.name, tt.value, tt.want)
			}
			// The rest still loads, with the default in place of the bad value.
			if c.UpstreamBaseURL != "https://api.example.com/api/v1" {
				t.Fatalf("other variables not loaded: %+v", c)
			}
			if err := c.Validate(ModeSync); err != nil {
				t.Fatalf("a bad value should leave its default, which validates: %v", err)
			}
		})
	}
}

// Every value that does not decode is reported, each on its own line, with the values that do
// decode kept: envconfig.Process alone would stop at the first.
func TestLoadReportsEveryBadValue(t *testing.T) {
	t.Parallel()
	c, err := load(t, with(valid(), "SYNC_LEASE_TTL", "30", "SYNC_ENABLED", "yes", "MAX_BACKFILL_DAYS", "30", "DB_MAX_CONNS", "many"))
	if err == nil {
		t.Fatal("Load accepted three bad values")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], `DB_MAX_CONNS "many": is not a whole number`) ||
		!strings.HasPrefix(lines[1], `SYNC_ENABLED "yes": is not a boolean`) ||
		lines[2] != `SYNC_LEASE_TTL "30": is not a duration: use a number with a unit (ns, us, ms, s, m, h), such as "2m"` {
		t.Fatalf("want one line per bad value, in the variables' order, naming the fix:\n%v", err)
	}
	if c.MaxBackfillDays != 30 || c.SyncLeaseTTL != 2*time.Minute {
		t.Fatalf("good values lost or bad ones not defaulted: %+v", c)
	}
}

// A bad value is shown as one quoted, cleaned line: it cannot reach the terminal raw.
func TestLoadShowsBadValuesSafely(t *testing.T) {
	t.Parallel()
	_, err := load(t, with(valid(), "SYNC_CONCURRENCY", "4\x1b[2J"+strings.Repeat("9", 200)))
	if err == nil {
		t.Fatal("Load accepted it")
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\x1b\n") || len(msg) > 200 || !strings.HasPrefix(msg, `SYNC_CONCURRENCY "4 [2J9`) {
		t.Fatalf("error shows the value unsafely: %q", msg)
	}
}

func TestValidateProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		mode Mode
		want string // "" means valid
	}{
		{"valid sync", valid(), ModeSync, ""},
		{"migrate needs only the database", map[string]string{"DATABASE_URL": "postgres://localhost/db"}, ModeMigrate, ""},
		{"key=value DSN", with(valid(), "DATABASE_URL", "host=db user=app password=pw dbname=x"), ModeSync, ""},
		{"missing database", with(valid(), "DATABASE_URL", ""), ModeSync, "DATABASE_URL is empty"},
		{"database scheme", with(valid(), "DATABASE_URL", "mysql://u@h/db"), ModeMigrate, `DATABASE_URL mysql://u@h/db has scheme "mysql"`},
		{"database garbage", with(valid(), "DATABASE_URL", "localhost"), ModeMigrate, "DATABASE_URL is neither"},
		{"pool mode", with(valid(), "DB_POOL_MODE", "statement"), ModeMigrate, `DB_POOL_MODE "statement" is not a pool mode`},
		{"webhook address", with(valid(), "WEBHOOK_ADDR", "8080"), ModeSync, `WEBHOOK_ADDR "8080" is not host:port`},
		{"webhook address ok", with(valid(), "WEBHOOK_ADDR", ":8080", "WEBHOOK_SECRET", "hook-s3cret"), ModeSync, ""},
		// Finding 5: a listener the network reaches needs the secret; loopback may go unsigned.
		{"webhook without secret", with(valid(), "WEBHOOK_ADDR", ":8080"), ModeSync,
			`WEBHOOK_ADDR ":8080" accepts deliveries from the network but WEBHOOK_SECRET is empty: set WEBHOOK_SECRET to the secret the upstream signs webhooks with, or listen on loopback only (e.g. WEBHOOK_ADDR=127.0.0.1:8080)`},
		{"webhook on all interfaces without secret", with(valid(), "WEBHOOK_ADDR", "0.0.0.0:8080"), ModeSync, "WEBHOOK_SECRET is empty"},
		{"webhook on a LAN address without secret", with(valid(), "WEBHOOK_ADDR", "10.0.0.5:8080"), ModeSync, "WEBHOOK_SECRET is empty"},
		{"webhook on loopback unsigned", with(valid(), "WEBHOOK_ADDR", "127.0.0.1:8080"), ModeSync, ""},
		{"webhook on ::1 unsigned", with(valid(), "WEBHOOK_ADDR", "[::1]:8080"), ModeSync, ""},
		{"webhook on localhost unsigned", with(valid(), "WEBHOOK_ADDR", "localhost:8080"), ModeSync, ""},
		{"trigger interval", with(valid(), "TRIGGER_MIN_INTERVAL", "100ms"), ModeSync, "TRIGGER_MIN_INTERVAL 100ms is too short: set at least 1s"},
		// Finding 7: the tokens cross the network only encrypted; minted JWTs live at most 15m.
		{"http base URL", with(valid(), "UPSTREAM_BASE_URL", "http://api.example.com/api/v1"), ModeSync,
			"UPSTREAM_BASE_URL is http:// to a host other than this machine (http://api.example.com): the admin token and user tokens would cross the network in cleartext; use https://api.example.com/api/v1, or set UPSTREAM_ALLOW_INSECURE=true"},
		{"http base URL allowed", with(valid(), "UPSTREAM_BASE_URL", "http://api.example.com/api/v1", "UPSTREAM_ALLOW_INSECURE", "true"), ModeSync, ""},
		{"http loopback base URL", with(valid(), "UPSTREAM_BASE_URL", "http://127.0.0.1:8081/api/v1"), ModeSync, ""},
		{"http localhost base URL", with(valid(), "UPSTREAM_BASE_URL", "http://localhost:8081/api/v1"), ModeSync, ""},
		{"JWT TTL too long", with(valid(), "UPSTREAM_JWT_TTL", "1h"), ModeSync,
			"UPSTREAM_JWT_TTL 1h0m0s is above 15m0s: a minted token that leaks would stay good that long; set at most 15m0s (default 5m0s)"},
		{"JWT TTL at the bound", with(valid(), "UPSTREAM_JWT_TTL", "15m"), ModeSync, ""},
		{"max conns", with(valid(), "DB_MAX_CONNS", "-1"), ModeMigrate, "DB_MAX_CONNS -1 is out of range"},
		{"metrics address", with(valid(), "METRICS_ADDR", "9464"), ModeSync, `METRICS_ADDR "9464" is not host:port`},
		{"metrics off", with(valid(), "METRICS_ADDR", "off"), ModeSync, ""},
		{"request poll", with(valid(), "SYNC_REQUEST_POLL", "10ms"), ModeSync, "SYNC_REQUEST_POLL 10ms is too short"},
		{"log level", with(valid(), "LOG_LEVEL", "verbose"), ModeMigrate, `LOG_LEVEL "verbose" is not a level`},
		{"missing base URL", with(valid(), "UPSTREAM_BASE_URL", ""), ModeSync, "UPSTREAM_BASE_URL is empty"},
		{"relative base URL", with(valid(), "UPSTREAM_BASE_URL", "api.example.com/api/v1"), ModeSync, "UPSTREAM_BASE_URL \"api.example.com/api/v1\" is not an absolute http(s) URL"},
		{"ftp base URL", with(valid(), "UPSTREAM_BASE_URL", "ftp://api.example.com/api/v1"), ModeSync, "is not an absolute http(s) URL"},
		{"base URL query", with(valid(), "UPSTREAM_BASE_URL", "https://api.example.com/api/v1?x=1"), ModeSync, "UPSTREAM_BASE_URL https://api.example.com/api/v1 has a query"},
		{"no credentials", with(valid(), "UPSTREAM_ADMIN_TOKEN", ""), ModeSync,
			"UPSTREAM_ADMIN_TOKEN and SUPABASE_JWT_SECRET are both empty: set UPSTREAM_ADMIN_TOKEN to call the API as admin, or SUPABASE_JWT_SECRET to mint per-user tokens"},
		{"JWT secret suffices", with(valid(), "UPSTREAM_ADMIN_TOKEN", "", "SUPABASE_JWT_SECRET", "jwt-secret"), ModeSync, ""},
		{"schedule fields", with(valid(), "SYNC_SCHEDULE", "*/5 * *"), ModeSync,
			`SYNC_SCHEDULE "*/5 * *": expected 5 fields, found 3: use a 5-field cron spec such as "*/5 * * * *" (UTC)`},
		{"schedule seconds field", with(valid(), "SYNC_SCHEDULE", "0 */5 * * * *"), ModeSync, "SYNC_SCHEDULE \"0 */5 * * * *\": expected 5 fields, found 6"},
		{"schedule range", with(valid(), "SYNC_SCHEDULE", "99 * * * *"), ModeSync, `SYNC_SCHEDULE "99 * * * *"`},
		{"schedule descriptor", with(valid(), "SYNC_SCHEDULE", "@every 1m"), ModeSync, ""},
		{"schedule ignored for migrate", with(valid(), "SYNC_SCHEDULE", "nope"), ModeMigrate, ""},
		{"report, pause and resume need only the database", map[string]string{"DATABASE_URL": "postgres://localhost/db", "SYNC_SCHEDULE": "nope"}, ModeDatabase, ""},
		{"report needs the database", map[string]string{"SYNC_SCHEDULE": "nope"}, ModeDatabase, "DATABASE_URL is empty"},
		{"concurrency low", with(valid(), "SYNC_CONCURRENCY", "0"), ModeSync, "SYNC_CONCURRENCY 0 is out of range"},
		{"concurrency high", with(valid(), "SYNC_CONCURRENCY", "65", "DB_MAX_CONNS", "100"), ModeSync, "SYNC_CONCURRENCY 65 is out of range"},
		{"pool too small", with(valid(), "SYNC_CONCURRENCY", "8", "DB_MAX_CONNS", "8"), ModeSync,
			"DB_MAX_CONNS 8 is below SYNC_CONCURRENCY + 1 (9): each user in flight holds a connection and claiming needs one more; raise DB_MAX_CONNS to at least 9, or leave it empty to size the pool from SYNC_CONCURRENCY (18)"},
		{"lease short", with(valid(), "SYNC_LEASE_TTL", "5s"), ModeSync, "SYNC_LEASE_TTL 5s is too short: set at least 10s"},
		{"user timeout", with(valid(), "SYNC_USER_TIMEOUT", "0s"), ModeSync, "SYNC_USER_TIMEOUT 0s is not positive"},
		{"backoff order", with(valid(), "FAILURE_BACKOFF_BASE", "2h"), ModeSync, "FAILURE_BACKOFF_MAX 1h0m0s is below FAILURE_BACKOFF_BASE 2h0m0s"},
		{"backoff base", with(valid(), "FAILURE_BACKOFF_BASE", "-1m"), ModeSync, "FAILURE_BACKOFF_BASE -1m0s is not positive"},
		{"settle lag", with(valid(), "SETTLE_LAG", "0s"), ModeSync, "SETTLE_LAG 0s is not positive"},
		{"task overlap", with(valid(), "TASK_OVERLAP", "-5m"), ModeSync, "TASK_OVERLAP -5m0s is not positive"},
		{"revision window", with(valid(), "REVISION_WINDOW", "0s"), ModeSync, "REVISION_WINDOW 0s is not positive"},
		{"revision interval", with(valid(), "REVISION_INTERVAL", "-1m"), ModeSync, "REVISION_INTERVAL -1m0s is negative"},
		{"backfill", with(valid(), "MAX_BACKFILL_DAYS", "91"), ModeSync, "MAX_BACKFILL_DAYS 91 is out of range"},
		{"JWT TTL", with(valid(), "UPSTREAM_JWT_TTL", "0s"), ModeSync, "UPSTREAM_JWT_TTL 0s is not positive"},
		{"timeout", with(valid(), "UPSTREAM_TIMEOUT", "-1s"), ModeSync, "UPSTREAM_TIMEOUT -1s is not positive"},
		{"retry budget", with(valid(), "UPSTREAM_RETRY_MAX_ELAPSED", "0s"), ModeSync, "UPSTREAM_RETRY_MAX_ELAPSED 0s is not positive"},
		{"retry-after cap", with(valid(), "UPSTREAM_RETRY_AFTER_MAX", "0s"), ModeSync, "UPSTREAM_RETRY_AFTER_MAX 0s is not positive"},
		{"in flight negative", with(valid(), "UPSTREAM_MAX_INFLIGHT", "-1", "SYNC_CONCURRENCY", "8"), ModeSync,
			"UPSTREAM_MAX_INFLIGHT -1 is negative: set the most upstream requests in flight at once (at least 1), or leave it empty for 4 x SYNC_CONCURRENCY (32)"},
		{"in flight below concurrency", with(valid(), "UPSTREAM_MAX_INFLIGHT", "1", "SYNC_CONCURRENCY", "8"), ModeSync, ""},
		{"rate limit negative", with(valid(), "UPSTREAM_RATE_LIMIT", "-5"), ModeSync,
			"UPSTREAM_RATE_LIMIT -5 is not a rate: set the upstream requests per second this process may make (e.g. 100; the vendor's limit divided by the replicas), or 0 or empty for no limit"},
		{"rate limit fraction", with(valid(), "UPSTREAM_RATE_LIMIT", "0.5"), ModeSync, ""},
		{"rate limit off", with(valid(), "UPSTREAM_RATE_LIMIT", "0"), ModeSync, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := loadAndValidate(t, tt.env, tt.mode)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted it, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// DB_MAX_CONNS left empty follows SYNC_CONCURRENCY, so raising the concurrency alone is never a
// configuration error; a value set explicitly is used as given, and one too small for the
// concurrency is an error that names both fixes.
// DB_MAX_CONNS and UPSTREAM_MAX_INFLIGHT left empty (or 0) follow SYNC_CONCURRENCY; a value
// set is used as given; the start-up log shows the effective bound.
func TestBoundsFollowConcurrency(t *testing.T) {
	t.Parallel()
	type bound struct {
		name string
		env  map[string]string
		want int
	}
	for _, b := range []struct {
		variable  string
		effective func(Config) int
		cases     []bound
	}{
		{"DB_MAX_CONNS", Config.PoolSize, []bound{
			{"defaults", valid(), DBMaxConnsDefault(4)},
			{"only concurrency 8", with(valid(), "SYNC_CONCURRENCY", "8"), DBMaxConnsDefault(8)},
			{"only concurrency 64", with(valid(), "SYNC_CONCURRENCY", "64"), DBMaxConnsDefault(64)},
			{"zero means unset", with(valid(), "SYNC_CONCURRENCY", "8", "DB_MAX_CONNS", "0"), DBMaxConnsDefault(8)},
			{"explicit, just enough", with(valid(), "SYNC_CONCURRENCY", "8", "DB_MAX_CONNS", "9"), 9},
			{"explicit, above", with(valid(), "SYNC_CONCURRENCY", "2", "DB_MAX_CONNS", "30"), 30},
		}},
		{"UPSTREAM_MAX_INFLIGHT", Config.UpstreamInFlight, []bound{
			{"defaults", valid(), 16},
			{"only concurrency 8", with(valid(), "SYNC_CONCURRENCY", "8"), 32},
			{"zero means unset", with(valid(), "SYNC_CONCURRENCY", "8", "UPSTREAM_MAX_INFLIGHT", "0"), 32},
			{"explicit", with(valid(), "SYNC_CONCURRENCY", "8", "UPSTREAM_MAX_INFLIGHT", "5"), 5},
		}},
	} {
		for _, tt := range b.cases {
			t.Run(b.variable+" "+tt.name, func(t *testing.T) {
				t.Parallel()
				c, err := load(t, tt.env)
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if err := c.Validate(ModeSync); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if got := b.effective(c); got != tt.want {
					t.Fatalf("effective %s = %d, want %d", b.variable, got, tt.want)
				}
				if r := c.Redacted()[b.variable]; r != strconv.Itoa(tt.want) {
					t.Fatalf("start-up log shows %s %q, want the effective %d", b.variable, r, tt.want)
				}
				if b.variable == "DB_MAX_CONNS" && c.PoolSize() < c.SyncConcurrency+1 {
					t.Fatalf("pool of %d cannot serve SYNC_CONCURRENCY %d", c.PoolSize(), c.SyncConcurrency)
				}
			})
		}
	}
	if DBMaxConnsDefault(8) != 18 {
		t.Fatalf("DBMaxConnsDefault(8) = %d: a write and a renewal per user in flight, one for claims, one spare", DBMaxConnsDefault(8))
	}
}

func TestValidateCollectsAllProblems(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{"SYNC_SCHEDULE": "x", "SYNC_CONCURRENCY": "0", "DB_POOL_MODE": "x"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	err = c.Validate(ModeSync)
	if err == nil {
		t.Fatal("Validate accepted an empty environment")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, name := range []string{"DATABASE_URL", "DB_POOL_MODE", "UPSTREAM_BASE_URL", "UPSTREAM_ADMIN_TOKEN", "SYNC_SCHEDULE", "SYNC_CONCURRENCY"} {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, name+" ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines start with %s, want 1:\n%s", n, name, err)
		}
	}
	if len(lines) != 6 {
		t.Errorf("%d problems, want 6:\n%s", len(lines), err)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	t.Parallel()
	const pw, tok = "Hunter2-pw", "tok-Sekrit"
	tests := []struct {
		name string
		env  map[string]string
		mode Mode
	}{
		{"bad scheme", with(valid(), "DATABASE_URL", "mysql://app:"+pw+"@h/db"), ModeMigrate},
		{"bad URL escaping", with(valid(), "DATABASE_URL", "postgres://app:"+pw+"%zz@h/db"), ModeMigrate},
		{"URL-looking garbage", with(valid(), "DATABASE_URL", "postgres://app:"+pw+"@h:port/db"), ModeMigrate},
		{"base URL credentials", with(valid(), "UPSTREAM_BASE_URL", "https://"+tok+":"+pw+"@api.example.com/api/v1"), ModeSync},
		{"base URL token query", with(valid(), "UPSTREAM_BASE_URL", "https://api.example.com/api/v1?token="+tok), ModeSync},
		{"errors next to secrets", with(valid(), "DATABASE_URL", "postgres://app:"+pw+"@h/db", "UPSTREAM_ADMIN_TOKEN", tok,
			"SUPABASE_JWT_SECRET", pw, "SYNC_SCHEDULE", "bad", "SYNC_CONCURRENCY", "0"), ModeSync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := loadAndValidate(t, tt.env, tt.mode)
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), tok) {
				t.Fatalf("error reveals a secret: %v", err)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dsn, want string
	}{
		{"postgres://app:s3cret@db:5432/postgres?sslmode=require", "postgres://app:xxxxx@db:5432/postgres?sslmode=require"},
		{"postgres://app@db/postgres", "postgres://app@db/postgres"},
		{"postgres://app@db/postgres?password=s3cret", "postgres://app@db/postgres?password=xxxxx"},
		{"host=db user=app password=s3cret dbname=x", "host=db user=app password=xxxxx dbname=x"},
		{"host=db password = 's3 cret' dbname=x", "host=db password = xxxxx dbname=x"},
		// Not a URL the driver reads, but its password position is certain: masked.
		{"postgres://app:s3cret%zz@db/postgres", "postgres://app:xxxxx@db/postgres"},
		// Finding 7: every form pgx accepts. A backslash escapes the space, so the password
		// runs on to TAIL; a quoted value may hold an escaped quote; a URL may name several hosts.
		{`host=db user=app password=se\ cr3tTAIL dbname=x`, "host=db user=app password=xxxxx dbname=x"},
		{`password=se\ cr3tTAIL`, "password=xxxxx"},
		{`host=db password='it\'s cr3tTAIL' dbname=x`, "host=db password=xxxxx dbname=x"},
		{"  host=db\tpassword=s3cret  ", "  host=db\tpassword=xxxxx  "},
		{"postgres://app:s3cret@h1:5432,h2:5433/db?sslmode=require", "postgres://app:xxxxx@h1:5432,h2:5433/db?sslmode=require"},
		{"postgresql://app@h1,h2/db?pass%77ord=s3cret&sslpassword=k3y", "postgresql://app@h1,h2/db?pass%77ord=xxxxx&sslpassword=xxxxx"},
		{"host=db password='unterminated", "(unparsable DATABASE_URL)"},
	}
	for _, tt := range tests {
		got := store.RedactDSN(tt.dsn)
		if got != tt.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
		for _, secret := range []string{"s3cret", "cr3tTAIL", "k3y"} {
			if strings.Contains(got, secret) {
				t.Errorf("RedactDSN(%q) = %q shows %s", tt.dsn, got, secret)
			}
		}
	}
	// config.loaded logs Redacted(): the escaped password never reaches it.
	kv, err := load(t, with(valid(), "DATABASE_URL", `host=db.internal user=app password=se\ cr3tTAIL dbname=postgres`))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := kv.Redacted()["DATABASE_URL"]; strings.Contains(got, "cr3tTAIL") || got != "host=db.internal user=app password=xxxxx dbname=postgres" {
		t.Errorf("Redacted()[DATABASE_URL] = %q", got)
	}

	c, err := load(t, with(valid(), "SUPABASE_JWT_SECRET", "jwt-s3cret", "CHARGE_FROM", "2026-01-01T00:00:00.5Z"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	r := c.Redacted()
	if len(r) != len(Names()) {
		t.Errorf("Redacted has %d entries, want one per variable (%d)", len(r), len(Names()))
	}
	for k, v := range r {
		for _, secret := range []string{"s3cret-pw", "admin-tok-123", "jwt-s3cret"} {
			if strings.Contains(v, secret) {
				t.Errorf("Redacted()[%s] = %q reveals a secret", k, v)
			}
		}
	}
	if r["DATABASE_URL"] != "postgres://app:xxxxx@db.internal:5432/postgres" || r["UPSTREAM_ADMIN_TOKEN"] != "(set)" ||
		r["SUPABASE_JWT_SECRET"] != "(set)" || r["CHARGE_FROM"] != "2026-01-01T00:00:00.5Z" || r["SYNC_CONCURRENCY"] != "4" {
		t.Errorf("Redacted = %v", r)
	}
}

// TestExampleValidates holds config.example.env to the code: it sets every variable the loader
// reads, its values validate, and each non-empty value is the variable's default (except the
// placeholders a deployment must replace).
func TestExampleValidates(t *testing.T) {
	t.Parallel()
	ex := readExample(t)
	var missing, extra []string
	names := map[string]bool{}
	for _, n := range Names() {
		names[n] = true
		if _, ok := ex[n]; !ok {
			missing = append(missing, n)
		}
	}
	for k := range ex {
		if !names[k] {
			extra = append(extra, k)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("config.example.env is out of step with Config: missing %v, unknown %v", missing, extra)
	}
	c, err := load(t, ex)
	if err != nil {
		t.Fatalf("Load(example): %v", err)
	}
	if err := c.Validate(ModeSync); err != nil {
		t.Fatalf("example does not validate:\n%v", err)
	}
	got, def := c.Redacted(), Defaults().Redacted()
	for _, placeholder := range []string{"DATABASE_URL", "UPSTREAM_BASE_URL", "UPSTREAM_ADMIN_TOKEN"} {
		delete(got, placeholder)
		delete(def, placeholder)
	}
	if !reflect.DeepEqual(got, def) {
		t.Fatalf("example values differ from the defaults:\nexample  %v\ndefaults %v", got, def)
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := Usage(&buf); err != nil {
		t.Fatalf("Usage: %v", err)
	}
	for _, n := range Names() {
		if !strings.Contains(buf.String(), n) {
			t.Errorf("usage table lacks %s:\n%s", n, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "*/5 * * * *") {
		t.Errorf("usage table lacks the schedule default:\n%s", buf.String())
	}
	// Each row is the tag's name, the type, the …Default constant and the desc tag.
	for _, row := range [][]string{
		{"DATABASE_URL", "String", "required: PostgreSQL to write to"},
		{"SYNC_LEASE_TTL", "Duration", "2m", "lease on a user being synced"},
		{"CHARGE_FROM", "Time", "RFC 3339 instant"},
		{"SYNC_ENABLED", "True or False", "false", "the daemon schedules"},
		{"MAX_BACKFILL_DAYS", "Integer", "7", "unsettled days"},
		{"METRICS_ADDR", "String", health.AddrDefault + " for the daemon"},
	} {
		line := ""
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(l, "  "+row[0]+" ") {
				line = l
			}
		}
		fields := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), 4)
		if len(fields) < 3 || fields[0] != row[0] || fields[1] != row[1] || !strings.Contains(line, row[len(row)-1]) ||
			(len(row) == 4 && fields[2] != row[2]) {
			t.Errorf("usage row %q, want %q", line, row)
		}
	}
}

// MetricsListen: the daemon serves on :9464 unless told otherwise, --once only where told, and
// off is off for both.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr       string
		once       bool
		wantListen string
	}{
		{"", false, health.AddrDefault},
		{"", true, ""},
		{"127.0.0.1:9000", false, "127.0.0.1:9000"},
		{"127.0.0.1:9000", true, "127.0.0.1:9000"},
		{MetricsOff, false, ""},
		{MetricsOff, true, ""},
	} {
		c := Defaults()
		c.MetricsAddr = tt.addr
		if got := c.MetricsListen(tt.once); got != tt.wantListen {
			t.Errorf("METRICS_ADDR %q once=%v: listen on %q, want %q", tt.addr, tt.once, got, tt.wantListen)
		}
	}
}

// The mapping onto the components' options carries every variable that sets one.
func TestComponentOptions(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	c, err := load(t, with(valid(), "DB_MAX_CONNS", "20", "DB_POOL_MODE", "transaction", "MIGRATE_ALLOW_EXPOSED", "true",
		"SUPABASE_JWT_SECRET", "jwt-s3cret", "UPSTREAM_JWT_TTL", "3m", "UPSTREAM_TIMEOUT", "7s", "UPSTREAM_RETRY_MAX_ELAPSED", "70s",
		"UPSTREAM_RETRY_AFTER_MAX", "17s", "UPSTREAM_ALLOW_INSECURE", "true",
		"UPSTREAM_MAX_INFLIGHT", "13", "UPSTREAM_RATE_LIMIT", "2.5e1",
		"SYNC_CONCURRENCY", "9", "SYNC_LEASE_TTL", "90s", "SYNC_USER_TIMEOUT", "9m", "FAILURE_BACKOFF_BASE", "2m", "FAILURE_BACKOFF_MAX", "2h",
		"SETTLE_LAG", "3h", "MAX_BACKFILL_DAYS", "9", "TASK_OVERLAP", "11m", "REVISION_WINDOW", "25h", "REVISION_INTERVAL", "0",
		"TRIGGER_MIN_INTERVAL", "31s", "CHARGE_ENABLED", "true", "CHARGE_FROM", from.Format(time.RFC3339)))
	if err != nil {
		t.Fatal(err)
	}
	log := zap.NewNop()
	if got, want := c.Store(log, "w-9"), (store.Options{MaxConns: 20, PoolMode: "transaction", Logger: log, AllowExposed: true,
		ApplicationName: "usage-sync w-9"}); !reflect.DeepEqual(got, want) {
		t.Errorf("Store:\n got %+v\nwant %+v", got, want)
	}
	if got, want := c.Upstream("usage-sync/test", log), (upstream.Config{BaseURL: "https://api.example.com/api/v1",
		AdminToken: "admin-tok-123", JWTSecret: "jwt-s3cret", JWTTTL: 3 * time.Minute, RequestTimeout: 7 * time.Second,
		MaxElapsed: 70 * time.Second, MaxRetryAfter: 17 * time.Second, AllowInsecure: true, UserAgent: "usage-sync/test",
		MaxInFlight: 13, RateLimit: 25, Logger: log}); !reflect.DeepEqual(got, want) {
		t.Errorf("Upstream:\n got %+v\nwant %+v", got, want)
	}
	got := c.Syncer("w-9")
	if got.ChargeFrom == nil || !got.ChargeFrom.Equal(from) {
		t.Errorf("Syncer ChargeFrom = %v, want %v", got.ChargeFrom, from)
	}
	got.ChargeFrom = nil
	want := syncer.Options{Concurrency: 9, LeaseTTL: 90 * time.Second, UserTimeout: 9 * time.Minute, SettleLag: 3 * time.Hour,
		TaskOverlap: 11 * time.Minute, RevisionWindow: 25 * time.Hour, RevisionInterval: syncer.RevisionEveryCycle,
		FailureBackoffBase: 2 * time.Minute, FailureBackoffMax: 2 * time.Hour, TriggerMinInterval: 31 * time.Second,
		MaxBackfillDays: 9, ChargeEnabled: true, WorkerID: "w-9"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Syncer:\n got %+v\nwant %+v", got, want)
	}
}

// loadAndValidate loads env with the real loader, which must accept it, and returns what
// Validate says of it in mode.
func loadAndValidate(t *testing.T, vars map[string]string, mode Mode) error {
	t.Helper()
	c, err := load(t, vars)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c.Validate(mode)
}
