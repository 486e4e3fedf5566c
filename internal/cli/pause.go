package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/safetext"
	"github.com/usage-sync/usage-sync/internal/store"
)

// pauseReasonMax bounds --reason: the dashboard shows it to the user.
const pauseReasonMax = 500

const pauseHelp = `usage-sync pause --user UUID --reason TEXT [--by NAME]

Stop syncing and charging one user until "usage-sync resume": no worker, schedule, webhook or
public.request_sync() takes the user, and nothing is charged. sync_state shows status 'paused'
with the reason, who paused (paused_by) and when (paused_at), so the dashboard can say "sync
paused by support"; the user can read the reason there.

Safe beside the daemon: a sync of the user in flight is fenced out. A write transaction it
began before the pause (a task chunk, or its final transaction) commits first, and the pause
waits for it; nothing it does after the pause is written or charged. It may still read the
user from the upstream for up to a third of SYNC_LEASE_TTL before it notices.
Pausing a paused user changes nothing and says who paused it.
Needs only DATABASE_URL.

Flags:
  --user UUID     the user to pause (its id in profiles)
  --reason TEXT   why, shown to the user on the dashboard (required; one line, at most 500 bytes)
  --by NAME       who pauses (default: WORKER_ID, else this host's name)

Exit codes:
  0  paused (or already paused)
  2  usage error: a missing or malformed flag, a user not in profiles, or a bad DATABASE_URL
  3  runtime error: database unreachable, schema outdated (run usage-sync migrate)
`

const resumeHelp = `usage-sync resume --user UUID

End a user's pause: it gets back the status it had and is due at once, so the daemon's next
cycle (or "usage-sync --once --user UUID", to catch up now) syncs it and catches up everything
since the pause, as after an outage: nothing lost, nothing charged twice.
Safe beside the daemon. Needs only DATABASE_URL.

Flags:
  --user UUID   the user to resume

Exit codes:
  0  resumed
  1  the user is not paused: nothing changed
  2  usage error: a missing or malformed --user, a user not in profiles, or a bad DATABASE_URL
  3  runtime error: database unreachable, schema outdated (run usage-sync migrate)
`

// runPause pauses one user (see pauseHelp).
func runPause(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("usage-sync pause", stderr)
	user := fs.String("user", "", "the user (uuid) to pause")
	reason := fs.String("reason", "", "why, shown to the user")
	by := fs.String("by", "", "who pauses")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *help {
		_, err := fmt.Fprint(stdout, pauseHelp)
		return err
	}
	why := strings.TrimSpace(*reason)
	if why == "" {
		return usageError(stderr, `pause needs --reason "TEXT": say why, for the dashboard and the next operator`)
	}
	if safetext.Clean(why, pauseReasonMax) != why {
		return usageError(stderr, "--reason: give plain text on one line, at most %d bytes (the dashboard shows it)", pauseReasonMax)
	}
	who := strings.TrimSpace(*by)
	if who != "" {
		var ok bool
		if who, ok = safetext.ID(who); !ok {
			return usageError(stderr, "--by %q: give a name of plain text, at most %d bytes, such as support-alice", *by, safetext.MaxIDDefault)
		}
	}
	a, uid, err := startUserCommand(ctx, "pause", *user, fs.NArg(), load, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	if who == "" {
		who = pausedByDefault(a.cfg.WorkerID)
	}
	p, err := a.st.Pause(ctx, nil, uid, why, who)
	if err != nil {
		return a.fail(ExitRuntime, "pause", err)
	}
	if p.Already {
		a.log.Info("user.pause.unchanged", zap.String("user_id", uid), zap.String("paused_by", p.By), zap.Time("paused_at", p.At))
		fmt.Fprintf(stdout, "user %s was already paused by %s at %s: %s\nnothing changed; usage-sync resume --user %s ends the pause\n",
			uid, p.By, p.At.UTC().Format(time.RFC3339), p.Reason, uid)
		return nil
	}
	a.log.Info("user.paused", zap.String("user_id", uid), zap.String("paused_by", p.By), zap.Time("paused_at", p.At),
		zap.String("reason", p.Reason), zap.String("interrupted_worker", p.Interrupted))
	fmt.Fprintf(stdout, "paused user %s at %s by %s: %s\n", uid, p.At.UTC().Format(time.RFC3339), p.By, p.Reason)
	if p.Interrupted != "" {
		fmt.Fprintf(stdout, "a sync by worker %s was in flight: it writes and charges nothing from now on\n", p.Interrupted)
	}
	fmt.Fprintf(stdout, "no sync or charge until: usage-sync resume --user %s\n", uid)
	return nil
}

// runResume ends one user's pause (see resumeHelp).
func runResume(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("usage-sync resume", stderr)
	user := fs.String("user", "", "the user (uuid) to resume")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *help {
		_, err := fmt.Fprint(stdout, resumeHelp)
		return err
	}
	a, uid, err := startUserCommand(ctx, "resume", *user, fs.NArg(), load, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	r, err := a.st.Resume(ctx, nil, uid)
	if errors.Is(err, store.ErrNotPaused) {
		fmt.Fprintf(stdout, "user %s is not paused: nothing changed\n", uid)
		return &ExitError{Code: ExitUsersFailed, Err: fmt.Errorf("user %s: %w", uid, err), Reported: true}
	}
	if err != nil {
		return a.fail(ExitRuntime, "resume", err)
	}
	a.log.Info("user.resumed", zap.String("user_id", uid), zap.String("status", r.Status),
		zap.String("paused_by", r.Paused.By), zap.Time("paused_at", r.Paused.At))
	fmt.Fprintf(stdout, "resumed user %s (paused by %s at %s: %s); status back to %s\n",
		uid, r.Paused.By, r.Paused.At.UTC().Format(time.RFC3339), r.Paused.Reason, r.Status)
	since := "its enrolment"
	if r.LastSuccessAt != nil {
		since = "its last sync at " + r.LastSuccessAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "due now: the next cycle catches up everything since %s (now: usage-sync --once --user %s)\n", since, uid)
	return nil
}

// startUserCommand checks a one-user command's --user and arguments, opens the database, checks
// its schema and that the user is in profiles.
func startUserCommand(ctx context.Context, name, user string, nargs int, load Load, stderr io.Writer) (*app, string, error) {
	if nargs > 0 {
		return nil, "", usageError(stderr, "%s takes only flags: see usage-sync %s --help", name, name)
	}
	uid := strings.ToLower(strings.TrimSpace(user))
	if !safetext.IsUUID(uid) {
		return nil, "", usageError(stderr, "%s needs --user UUID (the user's id in profiles), got %q", name, user)
	}
	a, err := start(ctx, load, config.ModeDatabase, stderr)
	if err != nil {
		return nil, "", err
	}
	failed := func(code int, stage string, err error) (*app, string, error) {
		err = a.fail(code, stage, err)
		a.close()
		return nil, "", err
	}
	if err := a.st.CheckSchema(a.startupCtx); err != nil {
		return failed(ExitRuntime, "check schema", err)
	}
	known, err := a.st.HasUser(a.startupCtx, uid)
	if err != nil {
		return failed(ExitRuntime, name, err)
	}
	if !known {
		return failed(ExitUsage, name, fmt.Errorf("--user %s is not in profiles: give the id of a user the dashboard knows", uid))
	}
	a.stopStartup()
	return a, uid, nil
}

// pausedByDefault is who a pause is recorded as when --by is not given: WORKER_ID, else the
// host's name (without the pid a worker id carries: a person ran this, not a worker).
func pausedByDefault(workerID string) string {
	if workerID != "" {
		return workerID
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		return host
	}
	return "usage-sync"
}
