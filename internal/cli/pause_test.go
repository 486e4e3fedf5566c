package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
)

// pause --help and resume --help name every flag and every exit code, on stdout, exit 0.
func TestPauseAndResumeHelp(t *testing.T) {
	t.Parallel()
	for cmd, want := range map[string][]string{
		"pause":  {"--user", "--reason", "--by", "Exit codes", "\n  0 ", "\n  2 ", "\n  3 ", "WORKER_ID"},
		"resume": {"--user", "Exit codes", "\n  0 ", "\n  1 ", "\n  2 ", "\n  3 "},
	} {
		for _, h := range []string{"--help", "-h"} {
			r := run(t, env(""), cmd, h)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("%s %s: exit %d, stderr %q", cmd, h, r.code, r.stderr)
			}
			for _, w := range want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("%s %s lacks %q:\n%s", cmd, h, w, r.stdout)
				}
			}
		}
	}
	r := run(t, env(""), "--help")
	for _, w := range []string{"usage-sync pause --user UUID --reason TEXT", "usage-sync resume --user UUID"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("usage-sync --help lacks %q", w)
		}
	}
}

// pause and resume from the command line: what they print, what sync_state holds, their exit
// codes, and a --once beside them that leaves the paused user alone.
func TestPauseAndResumeCommands(t *testing.T) {
	t.Parallel()
	dsn, sim, base := simulated(t, 9, 2)
	u := sim.Users()[0]
	getenv := env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = base
		c.UpstreamAdminToken = "adm"
		c.WorkerID = "ops-box"
		c.ChargeEnabled = true
	})

	for _, bad := range [][]string{
		{"pause", "--user", u},                           // no reason
		{"pause", "--user", "nope", "--reason", "x"},     // not a uuid
		{"pause", "--user", u, "--reason", "two\nlines"}, // not one line
		{"pause", "--user", u, "--reason", "x", "extra"}, // an argument
		{"resume"}, // no user
		{"pause", "--user", "00000000-0000-4000-8000-000000000000", "--reason", "x"}, // not in profiles
	} {
		if r := run(t, getenv, bad...); r.code != ExitUsage {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", bad, r.code, ExitUsage, r.stderr)
		}
	}
	if r := run(t, getenv, "resume", "--user", u); r.code != ExitUsersFailed || !strings.Contains(r.stdout, "is not paused") {
		t.Fatalf("resume of a user not paused: exit %d, stdout %q", r.code, r.stdout)
	}

	r := run(t, getenv, "pause", "--user", u, "--reason", "billing dispute #42")
	if r.code != 0 || !strings.Contains(r.stdout, "paused user "+u) || !strings.Contains(r.stdout, "by ops-box: billing dispute #42") {
		t.Fatalf("pause: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, `"event":"user.paused"`) {
		t.Errorf("pause logged no user.paused: %s", r.stderr)
	}
	var status, by, reason string
	if err := pgtest.Pool(t, dsn).QueryRow(context.Background(),
		`select status, paused_by, pause_reason from sync_state where user_id = $1`, u).Scan(&status, &by, &reason); err != nil ||
		status != "paused" || by != "ops-box" || reason != "billing dispute #42" {
		t.Fatalf("sync_state after pause: %q %q %q %v", status, by, reason, err)
	}
	if r := run(t, getenv, "pause", "--user", u, "--reason", "again", "--by", "bob"); r.code != 0 || !strings.Contains(r.stdout, "already paused by ops-box") {
		t.Fatalf("second pause: exit %d, stdout %q", r.code, r.stdout)
	}

	r = run(t, getenv, "--once", "--all")
	if r.code != 0 || !strings.Contains(r.stderr, "1 synced") || !strings.Contains(r.stderr, "1 paused") || !strings.Contains(r.stderr, "paused: "+u) {
		t.Fatalf("--once --all beside the pause: exit %d, stderr:\n%s", r.code, r.stderr)
	}

	r = run(t, getenv, "resume", "--user", u)
	if r.code != 0 || !strings.Contains(r.stdout, "resumed user "+u) || !strings.Contains(r.stdout, "status back to pending") {
		t.Fatalf("resume: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, getenv, "--once"); r.code != 0 || !strings.Contains(r.stderr, "2 users: 2 synced") {
		t.Fatalf("--once after resume: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if err := pgtest.Pool(t, dsn).QueryRow(context.Background(),
		`select status from sync_state where user_id = $1 and last_success_at is not null and paused_at is null`, u).Scan(&status); err != nil || status != "ok" {
		t.Fatalf("the resumed user after --once: %q, %v; want synced", status, err)
	}
}
