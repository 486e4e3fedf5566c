package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

const password = "Pa55-w0rd-XyZ"

// env returns a Load of a complete, valid configuration whose database is dsn, after edits: what
// config.Load would decode from such an environment (the config package's tests hold the
// decoding itself, on real process environments).
func env(dsn string, edits ...func(*config.Config)) Load {
	c := config.Defaults()
	c.DatabaseURL = dsn
	c.UpstreamBaseURL = "http://127.0.0.1:1/api/v1"
	c.UpstreamAdminToken = "admin-token-secret"
	c.LogLevel = "debug"
	// Parallel daemons must not fight over the default :9464.
	c.MetricsAddr = "127.0.0.1:0"
	for _, edit := range edits {
		edit(&c)
	}
	return func() (config.Config, error) { return c, nil }
}

// dbOnly is a Load of an environment that sets only DATABASE_URL, after edits.
func dbOnly(dsn string, edits ...func(*config.Config)) Load {
	c := config.Defaults()
	c.DatabaseURL = dsn
	for _, edit := range edits {
		edit(&c)
	}
	return func() (config.Config, error) { return c, nil }
}

// badEnv is a Load whose environment did not decode: env(dsn, edits...) and the decoding
// problem problem.
func badEnv(problem error, dsn string, edits ...func(*config.Config)) Load {
	c, _ := env(dsn, edits...)()
	return func() (config.Config, error) { return c, problem }
}

// ref returns a pointer to v.
func ref[T any](v T) *T { return &v }

// closedDB is a database URL nothing listens on.
const closedDB = "postgres://app:" + password + "@127.0.0.1:1/app?sslmode=disable&connect_timeout=5"

// output collects what Run writes and lets a test wait for a line to appear, instead of sleeping.
type output struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	waits map[waitFor]chan struct{}
}

type waitFor struct {
	s string
	n int
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	for w, ch := range o.waits {
		if strings.Count(o.buf.String(), w.s) >= w.n {
			close(ch)
			delete(o.waits, w)
		}
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// when returns a channel closed once the output contains s.
func (o *output) when(s string) <-chan struct{} { return o.whenCount(s, 1) }

// whenCount returns a channel closed once the output contains s at least n times.
func (o *output) whenCount(s string, n int) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	ch := make(chan struct{})
	if strings.Count(o.buf.String(), s) >= n {
		close(ch)
		return ch
	}
	if o.waits == nil {
		o.waits = map[waitFor]chan struct{}{}
	}
	o.waits[waitFor{s, n}] = ch
	return ch
}

type result struct {
	err            error
	code           int
	stdout, stderr string
}

func run(t *testing.T, getenv Load, args ...string) result {
	t.Helper()
	var stdout, stderr output
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, args, getenv, &stdout, &stderr)
	return result{err: err, code: ExitCode(err), stdout: stdout.String(), stderr: stderr.String()}
}

// exampleNames lists the variables config.example.env sets, which the config package's tests hold
// to be every variable Config reads.
func exampleNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config.example.env"))
	if err != nil {
		t.Fatalf("read example: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			names = append(names, name)
		}
	}
	if len(names) < 20 {
		t.Fatalf("config.example.env names only %v", names)
	}
	return names
}

// Every command Run dispatches is in the short usage, the one the unknown-command message
// prints after naming them from the same table.
func TestEveryCommandInUsage(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		if !strings.Contains(shortUsage, "usage-sync "+c.name) || !strings.Contains(commandNames(), c.name) {
			t.Errorf("command %s is missing from the short usage or the unknown-command message", c.name)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}, {"migrate", "--help"}, {"--once", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := run(t, env(""), args...)
			if r.code != 0 || r.err != nil {
				t.Fatalf("exit %d (%v), want 0", r.code, r.err)
			}
			for _, want := range append(exampleNames(t), "migrate", "--once", "--all", "--user", "Exit codes", "*/5 * * * *") {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("help lacks %q", want)
				}
			}
			if r.stderr != "" {
				t.Errorf("help wrote to stderr: %q", r.stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := run(t, env(""), "--version")
	if r.code != 0 || r.stdout != "usage-sync dev (dev)\n" {
		t.Fatalf("exit %d, stdout %q; want 0 and %q", r.code, r.stdout, "usage-sync dev (dev)\n")
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		getenv Load
		args   []string
		want   []string // in stderr
	}{
		{"unknown flag", env(closedDB), []string{"--bogus"}, []string{"flag provided but not defined: -bogus", "Usage:"}},
		{"unknown command", env(closedDB), []string{"serve"}, []string{`unknown command "serve": the commands are migrate, report, resync, verify, pause, resume and help`, "Usage:"}},
		{"all without once", env(closedDB), []string{"--all"}, []string{"--all and --user select the users of a --once run: add --once"}},
		{"user without once", env(closedDB), []string{"--user", "3f2b5c9e-0a7d-4e61-9a51-2c1f0f6e8b2d"}, []string{"add --once"}},
		{"user not a uuid", env(closedDB), []string{"--once", "--user", "not-a-uuid"}, []string{`--user "not-a-uuid" is not a UUID`}},
		{"user empty", env(closedDB), []string{"--once", "--user="}, []string{`--user "" is not a UUID`}},
		{"user missing value", env(closedDB), []string{"--once", "--user"}, []string{"flag needs an argument: -user"}},
		{"migrate argument", env(closedDB), []string{"migrate", "now"}, []string{`migrate takes no arguments, got "now"`}},
		{"missing DATABASE_URL", env(""), nil, []string{"DATABASE_URL is empty"}},
		{"missing DATABASE_URL for --once", env(""), []string{"--once"}, []string{"DATABASE_URL is empty"}},
		{"missing DATABASE_URL for migrate", env(""), []string{"migrate"}, []string{"DATABASE_URL is empty"}},
		{"bad schedule", env(closedDB, func(c *config.Config) {
			c.SyncSchedule = "*/5 * *"
		}), nil, []string{`SYNC_SCHEDULE "*/5 * *": expected 5 fields, found 3`}},
		{"bad schedule for --once", env(closedDB, func(c *config.Config) {
			c.SyncSchedule = "every minute"
		}), []string{"--once"}, []string{"SYNC_SCHEDULE"}},
		{"no upstream credentials", env(closedDB, func(c *config.Config) {
			c.UpstreamAdminToken = ""
		}), []string{"--once"}, []string{"UPSTREAM_ADMIN_TOKEN and SUPABASE_JWT_SECRET are both empty"}},
		{"undecodable value", badEnv(errors.New(`SYNC_CONCURRENCY "four": is not a whole number: set a number such as 4`), closedDB), nil,
			[]string{"the configuration has problems", `SYNC_CONCURRENCY "four": is not a whole number`}},
		{"all problems at once", env("", func(c *config.Config) {
			c.SyncSchedule = "x"
			c.LogLevel = "loud"
		}), nil, []string{"DATABASE_URL", "SYNC_SCHEDULE", "LOG_LEVEL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tt.getenv, tt.args...)
			if r.code != ExitUsage {
				t.Fatalf("exit %d (%v), want %d; stderr:\n%s", r.code, r.err, ExitUsage, r.stderr)
			}
			if !Reported(r.err) {
				t.Errorf("error %v not marked reported, main would print it twice", r.err)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, `"event":"config.loaded"`) {
				t.Errorf("a usage error got as far as loading the configuration:\n%s", r.stderr)
			}
		})
	}
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  Load
	}{
		// The daemon waits instead (TestDaemonWaitsForItsDatabase).
		{"once", []string{"--once", "--all"}, env(closedDB)},
		// migrate needs only the database: no upstream settings, and a schedule it ignores.
		{"migrate", []string{"migrate"}, dbOnly(closedDB, func(c *config.Config) { c.SyncSchedule = "bad" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tt.env, tt.args...)
			if r.code != ExitRuntime {
				t.Fatalf("exit %d (%v), want %d; stderr:\n%s", r.code, r.err, ExitRuntime, r.stderr)
			}
			for _, s := range []string{r.err.Error(), r.stderr, r.stdout} {
				if strings.Contains(s, password) || strings.Contains(s, "admin-token-secret") {
					t.Fatalf("output reveals a secret:\n%s", s)
				}
			}
			if !strings.Contains(r.stderr, `"event":"run.failed"`) || !strings.Contains(r.stderr, "127.0.0.1") {
				t.Errorf("stderr should log run.failed naming the database host:\n%s", r.stderr)
			}
			// migrate runs at LOG_LEVEL info here, where it does not dump its configuration.
			if logged := strings.Contains(r.stderr, `"config.loaded"`); logged != (tt.name != "migrate") {
				t.Errorf("config.loaded logged: %v, want %v:\n%s", logged, tt.name != "migrate", r.stderr)
			}
			if strings.Contains(r.stderr, "daemon.database_wait") {
				t.Errorf("%s waited for the database instead of failing fast:\n%s", tt.name, r.stderr)
			}
			if tt.name != "migrate" && !strings.Contains(r.stderr, `"DATABASE_URL":"postgres://app:xxxxx@127.0.0.1:1/app`) {
				t.Errorf("config.loaded should show the redacted database URL:\n%s", r.stderr)
			}
			if !strings.Contains(r.stderr, "\nusage-sync: cannot reach PostgreSQL at 127.0.0.1:1: is PostgreSQL running on 127.0.0.1:1") {
				t.Errorf("stderr should have one human line naming the check:\n%s", r.stderr)
			}
		})
	}
}

// A database that does not exist gets the createdb command that makes it.
func TestMissingDatabaseHint(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	missing := strings.Replace(dsn, "/usagesync_", "/nosuch_", 1)
	if missing == dsn {
		t.Fatalf("cannot derive a missing database from %s", dsn)
	}
	r := run(t, env(missing), "migrate")
	if r.code != ExitRuntime {
		t.Fatalf("exit %d (%v), want %d", r.code, r.err, ExitRuntime)
	}
	if !strings.Contains(r.stderr, "does not exist: create it with `createdb -h 127.0.0.1 -p 5432 -U postgres nosuch_") {
		t.Fatalf("stderr should name the createdb command:\n%s", r.stderr)
	}
}

// A DATABASE_URL the driver rejects is a configuration error (exit 2), like any bad variable.
func TestRejectedDatabaseURL(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{"postgres://app@127.0.0.1/app?sslmode=bogus", "host=127.0.0.1 port=x dbname=app"} {
		for _, args := range [][]string{{"migrate"}, {"--once"}} {
			r := run(t, env(dsn), args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, "DATABASE_URL") {
				t.Fatalf("%v with DATABASE_URL=%s: exit %d, stderr:\n%s", args, dsn, r.code, r.stderr)
			}
		}
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{&ExitError{Code: ExitUsersFailed, Err: errors.New("x")}, 1},
		{&ExitError{Code: ExitUsage, Err: errors.New("x")}, 2},
		{errors.New("anything else"), 3},
		{errors.Join(errors.New("wrapped"), &ExitError{Code: ExitUsage, Err: errors.New("x")}), 2},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// The tests below use the real PostgreSQL (TEST_DATABASE_URL, or the machine's; `make test`
// starts one). The upstream is never reached: these databases have no users.

func TestMigrate(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	getenv := dbOnly(dsn)

	r := run(t, getenv, "migrate")
	if r.code != 0 {
		t.Fatalf("migrate: exit %d (%v); stderr:\n%s", r.code, r.err, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 1 || !strings.HasPrefix(lines[0], "applied migration 0001_") {
		t.Fatalf("first migrate printed %q, want one 'applied migration' line per migration", r.stdout)
	}

	r = run(t, getenv, "migrate")
	want := "schema up to date at version " + strconv.Itoa(store.SchemaVersion()) + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("second migrate: exit %d, stdout %q; want 0 and %q", r.code, r.stdout, want)
	}
}

func TestSchemaOutdated(t *testing.T) {
	t.Parallel()
	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	// The daemon waits for the migration instead (TestDaemonWaitsForItsDatabase).
	for _, args := range [][]string{{"--once"}} {
		r := run(t, env(dsn), args...)
		if r.code != ExitRuntime {
			t.Fatalf("%v on an unmigrated database: exit %d (%v), want %d", args, r.code, r.err, ExitRuntime)
		}
		if !errors.Is(r.err, store.ErrSchemaOutdated) || !strings.Contains(r.err.Error(), "run `usage-sync migrate`") {
			t.Fatalf("%v: error %q should say the schema is outdated and to run usage-sync migrate", args, r.err)
		}
		if !strings.Contains(r.stderr, "\nusage-sync: the database schema is older than this binary: run `usage-sync migrate`\n") {
			t.Fatalf("%v: no human line on stderr:\n%s", args, r.stderr)
		}
	}
}

func TestOnceWithNoUsers(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	// --once runs even though SYNC_ENABLED is false.
	r := run(t, env(dsn, func(c *config.Config) {
		c.SyncEnabled = false
	}), "--once")
	if r.code != 0 {
		t.Fatalf("exit %d (%v); stderr:\n%s", r.code, r.err, r.stderr)
	}
	if !strings.Contains(r.stderr, `"trigger":"once"`) || !strings.Contains(r.stderr, "usage-sync: run ") {
		t.Fatalf("stderr should hold the once cycle's log and its summary line:\n%s", r.stderr)
	}
}

// daemon starts Run without arguments and returns a function that cancels it and returns its error.
func daemon(t *testing.T, getenv Load, stderr *output) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, getenv, &output{}, stderr) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
			return nil
		}
	}
	t.Cleanup(func() { cancel() })
	return stop
}

func wait(t *testing.T, ch <-chan struct{}, what string, out *output) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s within 30s; stderr:\n%s", what, out.String())
	}
}

func TestDaemonDisabled(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	var stderr output
	stop := daemon(t, env(dsn), &stderr)
	wait(t, stderr.when(`"event":"schedule.disabled"`), "schedule.disabled event", &stderr)
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if strings.Contains(stderr.String(), "sync.cycle") {
		t.Fatalf("a disabled daemon ran a cycle:\n%s", stderr.String())
	}
}

func TestDaemonEnabled(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	var stderr output
	stop := daemon(t, env(dsn, func(c *config.Config) {
		c.SyncEnabled = true
		c.SyncSchedule = "@every 1s"
	}), &stderr)
	wait(t, stderr.when(`"trigger":"schedule"`), "scheduled cycle", &stderr)
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if !strings.Contains(stderr.String(), `"event":"daemon.stopped"`) {
		t.Fatalf("no daemon.stopped event:\n%s", stderr.String())
	}
}
