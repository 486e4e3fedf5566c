package config

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/usage-sync/usage-sync/internal/store"
)

// env turns a map into a getenv function.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
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
	got, err := Load(env(nil))
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
		MetricsAddr:        ":9464",
		SyncRequestPoll:    5 * time.Second,
		LogLevel:           "info",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadDecodes(t *testing.T) {
	t.Parallel()
	got, err := Load(env(map[string]string{
		"DB_MAX_CONNS":      "0x10", // envconfig parses integers with base prefixes
		"SYNC_ENABLED":      "1",
		"CHARGE_ENABLED":    "TRUE",
		"SYNC_LEASE_TTL":    "90s",
		"SYNC_SCHEDULE":     "@every 1m",
		"WORKER_ID":         "w-1",
		"CHARGE_FROM":       "2026-01-02T03:04:05.123456789Z",
		"MAX_BACKFILL_DAYS": "30",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.DBMaxConns != 16 || !got.SyncEnabled || !got.ChargeEnabled || got.SyncLeaseTTL != 90*time.Second ||
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
	got, err := Load(env(map[string]string{"CHARGE_FROM": "2026-01-02T05:04:05.000000001+02:00"}))
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
	c, err := Load(env(m))
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
	c, err = Load(env(with(valid(), "DATABASE_URL", "")))
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
		{"UPSTREAM_MAX_INFLIGHT", "32.5", "is not a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(with(valid(), tt.name, tt.value)))
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
		{"rate limit NaN", with(valid(), "UPSTREAM_RATE_LIMIT", "NaN"), ModeSync, "UPSTREAM_RATE_LIMIT NaN is not a rate"},
		{"rate limit infinite", with(valid(), "UPSTREAM_RATE_LIMIT", "+Inf"), ModeSync, "UPSTREAM_RATE_LIMIT +Inf is not a rate"},
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
func TestDBMaxConnsFollowsConcurrency(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"defaults", valid(), DBMaxConnsDefault(4)},
		{"only concurrency 8", with(valid(), "SYNC_CONCURRENCY", "8"), DBMaxConnsDefault(8)},
		{"only concurrency 64", with(valid(), "SYNC_CONCURRENCY", "64"), DBMaxConnsDefault(64)},
		{"zero means unset", with(valid(), "SYNC_CONCURRENCY", "8", "DB_MAX_CONNS", "0"), DBMaxConnsDefault(8)},
		{"explicit, just enough", with(valid(), "SYNC_CONCURRENCY", "8", "DB_MAX_CONNS", "9"), 9},
		{"explicit, above", with(valid(), "SYNC_CONCURRENCY", "2", "DB_MAX_CONNS", "30"), 30},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tt.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := c.Validate(ModeSync); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := c.PoolSize(); got != tt.want {
				t.Fatalf("PoolSize = %d, want %d", got, tt.want)
			}
			if got := c.PoolSize(); got < c.SyncConcurrency+1 {
				t.Fatalf("pool of %d cannot serve SYNC_CONCURRENCY %d", got, c.SyncConcurrency)
			}
			if r := c.Redacted()["DB_MAX_CONNS"]; r != strconv.Itoa(tt.want) {
				t.Fatalf("start-up log shows DB_MAX_CONNS %q, want the effective %d", r, tt.want)
			}
		})
	}
	if DBMaxConnsDefault(8) != 18 {
		t.Fatalf("DBMaxConnsDefault(8) = %d: a write and a renewal per user in flight, one for claims, one spare", DBMaxConnsDefault(8))
	}
}

// UPSTREAM_MAX_INFLIGHT left empty (or 0) follows SYNC_CONCURRENCY, 4 requests per user in
// flight; a value set is used as given; the start-up log shows the effective bound.
func TestUpstreamInFlightFollowsConcurrency(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"defaults", valid(), 16},
		{"only concurrency 8", with(valid(), "SYNC_CONCURRENCY", "8"), 32},
		{"zero means unset", with(valid(), "SYNC_CONCURRENCY", "8", "UPSTREAM_MAX_INFLIGHT", "0"), 32},
		{"explicit", with(valid(), "SYNC_CONCURRENCY", "8", "UPSTREAM_MAX_INFLIGHT", "5"), 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tt.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := c.Validate(ModeSync); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := c.UpstreamInFlight(); got != tt.want {
				t.Fatalf("UpstreamInFlight = %d, want %d", got, tt.want)
			}
			if r := c.Redacted()["UPSTREAM_MAX_INFLIGHT"]; r != strconv.Itoa(tt.want) {
				t.Fatalf("start-up log shows UPSTREAM_MAX_INFLIGHT %q, want the effective %d", r, tt.want)
			}
		})
	}
}

func TestValidateCollectsAllProblems(t *testing.T) {
	t.Parallel()
	c, err := Load(env(map[string]string{"SYNC_SCHEDULE": "x", "SYNC_CONCURRENCY": "0", "DB_POOL_MODE": "x"}))
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
	kv, err := Load(env(with(valid(), "DATABASE_URL", `host=db.internal user=app password=se\ cr3tTAIL dbname=postgres`)))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := kv.Redacted()["DATABASE_URL"]; strings.Contains(got, "cr3tTAIL") || got != "host=db.internal user=app password=xxxxx dbname=postgres" {
		t.Errorf("Redacted()[DATABASE_URL] = %q", got)
	}

	c, err := Load(env(with(valid(), "SUPABASE_JWT_SECRET", "jwt-s3cret", "CHARGE_FROM", "2026-01-01T00:00:00.5Z")))
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
	c, err := Load(env(ex))
	if err != nil {
		t.Fatalf("Load(example): %v", err)
	}
	if err := c.Validate(ModeSync); err != nil {
		t.Fatalf("example does not validate:\n%v", err)
	}
	defaults, _ := Load(env(nil))
	got, def := c.Redacted(), defaults.Redacted()
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
}

// TestLoadMatchesEnvconfig holds Load to envconfig.Process as the reference decoder, on the
// example's values and on values that exercise each decoding rule. It sets the process
// environment, so it cannot run in parallel.
func TestLoadMatchesEnvconfig(t *testing.T) {
	ex := readExample(t)
	tests := []struct {
		name  string
		extra map[string]string
	}{
		{"example", nil},
		{"charge from with nanoseconds", map[string]string{"CHARGE_FROM": "2026-03-01T00:00:00.123456789Z"}},
		{"charge from with offset", map[string]string{"CHARGE_FROM": "2026-03-01T02:00:00.5+02:00"}},
		{"prefixes and bools", map[string]string{"DB_MAX_CONNS": "0x10", "SYNC_CONCURRENCY": "010", "SYNC_ENABLED": "T", "CHARGE_ENABLED": "1"}},
		{"durations", map[string]string{"SETTLE_LAG": "1h30m", "TASK_OVERLAP": "90s", "SYNC_LEASE_TTL": "2m0.5s"}},
		{"floats", map[string]string{"UPSTREAM_RATE_LIMIT": "2.5e1", "UPSTREAM_MAX_INFLIGHT": "12"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := with(ex)
			for k, v := range tt.extra {
				m[k] = v
			}
			for _, n := range Names() {
				// Empty values are where the two loaders differ on purpose (see the package
				// comment): leave those variables unset, which both read as "default".
				if v := m[n]; v != "" {
					t.Setenv(n, v)
				} else {
					t.Setenv(n, "")
					os.Unsetenv(n)
				}
			}
			got, err := Load(os.Getenv)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var ref Config
			if err := envconfig.Process("", &ref); err != nil {
				t.Fatalf("envconfig.Process: %v", err)
			}
			// envconfig allocates every nil pointer to a struct, so an absent CHARGE_FROM comes
			// back as a pointer to the zero time; Load leaves it nil, which the syncer needs.
			if ref.ChargeFrom != nil && ref.ChargeFrom.IsZero() {
				ref.ChargeFrom = nil
			}
			if (got.ChargeFrom == nil) != (ref.ChargeFrom == nil) ||
				(got.ChargeFrom != nil && !got.ChargeFrom.Equal(*ref.ChargeFrom)) {
				t.Fatalf("CHARGE_FROM: Load %v, envconfig %v", got.ChargeFrom, ref.ChargeFrom)
			}
			got.ChargeFrom, ref.ChargeFrom = nil, nil
			if !reflect.DeepEqual(got, ref) {
				t.Fatalf("Load and envconfig disagree:\n  Load      %+v\n  envconfig %+v", got, ref)
			}
		})
	}
}

// loadAndValidate loads env with the real loader, which must accept it, and returns what
// Validate says of it in mode.
func loadAndValidate(t *testing.T, vars map[string]string, mode Mode) error {
	t.Helper()
	c, err := Load(env(vars))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c.Validate(mode)
}
