package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

const resyncHelp = `usage-sync resync --user UUID [--from YYYY-MM-DD] [--to YYYY-MM-DD]

Re-read one user's SETTLED UTC days, and the tasks created in them, as if they were not settled:
what the upstream corrected after SETTLE_LAG is mirrored into api_usage and tasks, increases are
charged exactly once by the usual increments (key_requests rows whose source ids name the new
totals, task_adjust for tasks), and decreases are logged (credits.revision_down) and never
refunded. Running it twice charges nothing the second time.

It takes the user's lease like any sync, so it is safe beside the daemon; a user another worker
is syncing at that moment is refused (exit 1): run it again. sync_state.settled_through does not
move; days of the range that are not settled yet are left to the next sync. It prints, per day,
the requests by key and by purpose and the task emails before -> after, and what was charged.

Flags:
  --user UUID         the user (required)
  --from YYYY-MM-DD   first day (default: the day charging starts: CHARGE_FROM, else the
                      user's enrolment; an earlier day is moved to it)
  --to YYYY-MM-DD     last day, included (default: the user's last settled day)
  At most 90 days a run: resync a longer range in several runs.

Exit codes:
  0  resynced (or nothing in the range is settled yet)
  1  the resync failed (the upstream, a lost lease) or another worker holds the user: run again
  2  usage or configuration error: a bad flag, an unknown user, more than 90 days
  3  runtime error: database unreachable, schema outdated (run usage-sync migrate)

Needs the same environment as --once (DATABASE_URL, UPSTREAM_BASE_URL and a credential;
CHARGE_ENABLED, CHARGE_FROM, SETTLE_LAG as the daemon has them).
`

// runResync re-reads a user's settled days (docs/operations.md, "An upstream correction").
func runResync(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("usage-sync resync", stderr)
	userArg := fs.String("user", "", "the user (uuid) to resync")
	fromArg := fs.String("from", "", "first UTC day, YYYY-MM-DD")
	toArg := fs.String("to", "", "last UTC day, YYYY-MM-DD")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *help {
		_, err := fmt.Fprint(stdout, resyncHelp)
		return err
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "resync takes flags only, got %q", fs.Arg(0))
	}
	user, ok := userFlag(*userArg)
	if !ok {
		return usageError(stderr, "resync needs --user UUID, the user's id from profiles; got %q", *userArg)
	}
	from, err := dayFlag("from", *fromArg)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	to, err := dayFlag("to", *toArg)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	if from != nil && to != nil {
		if to.Before(*from) {
			return usageError(stderr, "--to %s is before --from %s", *toArg, *fromArg)
		}
		if n := int(to.Sub(*from)/(24*time.Hour)) + 1; n > syncer.ResyncMaxDays {
			return usageError(stderr, "--from %s --to %s is %d days; a resync re-reads at most %d a run: split the range",
				*fromArg, *toArg, n, syncer.ResyncMaxDays)
		}
	}
	a, sy, err := startOperator(ctx, load, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	res, err := sy.Resync(ctx, syncer.ResyncOptions{UserID: user, From: from, To: to})
	var re *syncer.RangeError
	switch {
	case errors.Is(err, syncer.ErrUnknownUser):
		return a.fail(ExitUsage, "resync", fmt.Errorf("--user %s is not in profiles: give the id of a user the dashboard knows", user))
	case errors.As(err, &re):
		return a.fail(ExitUsage, "resync", err)
	case errors.Is(err, syncer.ErrUserLeased):
		fmt.Fprintf(stderr, "usage-sync: resync of %s: another worker is syncing the user now: run resync again in a minute\n", user)
		return &ExitError{Code: ExitUsersFailed, Err: err, Reported: true}
	case err != nil && store.IsUnavailable(err):
		return a.fail(ExitRuntime, "resync", err)
	case err != nil:
		fmt.Fprintf(stderr, "usage-sync: resync of %s failed, nothing after the failure was charged; fix the cause and run it again: %v\n", user, err)
		return &ExitError{Code: ExitUsersFailed, Err: err, Reported: true}
	}
	return printResync(stdout, res)
}

// printResync writes the per-day table and a summary line.
func printResync(stdout io.Writer, res syncer.ResyncResult) error {
	if res.Clamped {
		fmt.Fprintln(stdout, "--from is before the user's charge start: resyncing from the charge start (nothing before it is ever charged)")
	}
	if len(res.Days) == 0 {
		_, err := fmt.Fprintf(stdout, "resync %s: no settled day in the range (%d not settled yet: the next sync reads them); nothing to do\n",
			res.UserID, res.Unsettled)
		return err
	}
	charged := "charged"
	if res.Shadow {
		charged = "charged (shadow)"
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "day\tkey requests\tpurpose total\ttask emails\t%s\t\n", charged)
	var total int64
	for _, d := range res.Days {
		b, a := d.Before, d.After
		c := a.Charged - b.Charged
		if res.Shadow {
			c = a.ShadowCharged - b.ShadowCharged
		}
		total += c
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t\n", d.Day.Format(time.DateOnly), arrow(b.KeyRequests, a.KeyRequests),
			arrow(b.PurposeRequests, a.PurposeRequests), arrow(b.TaskEmails, a.TaskEmails), c)
	}
	fmt.Fprintf(w, "total\t\t\t\t%d\t\n", total)
	if err := w.Flush(); err != nil {
		return err
	}
	down, inconsistent := 0, 0
	for _, r := range res.Revisions {
		if r.Family == store.FamilyUnlisted {
			inconsistent++ // a purpose total below what its keys were charged: nothing charged for it
		} else {
			down++
		}
	}
	mode := ""
	if res.Shadow {
		mode = " (shadow mode: shadow: rows, balance untouched)"
	}
	_, err := fmt.Fprintf(stdout, "resync %s (run %s): %d settled days %s to %s re-read; charged %d, debited %d%s; %d decreases logged, not refunded; %d purpose totals below what was charged (charge.unlisted_inconsistent); %d days not settled yet left to the next sync; status %s\n",
		res.UserID, res.RunID, len(res.Days), res.Days[0].Day.Format(time.DateOnly), res.Days[len(res.Days)-1].Day.Format(time.DateOnly),
		res.Charged, res.Debited, mode, down, inconsistent, res.Unsettled, res.Status)
	return err
}

// arrow is "before → after", or the value alone when it did not change.
func arrow(before, after int64) string {
	if before == after {
		return fmt.Sprint(after)
	}
	return fmt.Sprintf("%d → %d", before, after)
}
