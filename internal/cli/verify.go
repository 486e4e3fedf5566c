package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

const verifyHelp = `usage-sync verify [--user UUID] [--json]

Answer "does what we charged match what the vendor counted?" for every user in profiles (or one):
read the upstream's lifetime key listing and its per-purpose totals of the user's settled days
(from the charge start: CHARGE_FROM, else the user's go-live), and compare them with the worker's
record (usage_sync) and the ledger (key_requests and unlisted_requests, or their shadow: sources
while CHARGE_ENABLED=false); and the dashboard's copy (api_keys, api_usage) with the record.
Usage newer than the last sync, and days not settled yet, are not differences. Users are read
SYNC_CONCURRENCY at a time, with the client's retries.

It writes nothing at all: no sync_state, no lease, no ledger row. It is safe beside the daemon.
Prints one line per user with a difference (its kind and the command that fixes it) and a total
line; docs/operations.md ("What verify reports") explains each kind.

Flags:
  --user UUID   only this user
  --json        one JSON document on stdout instead of the lines

Exit codes:
  0  no differences
  1  a difference was found, or a user could not be read from the upstream
  2  usage or configuration error (a bad flag, an unknown user)
  3  runtime error: database unreachable, schema outdated (run usage-sync migrate)

Needs the same environment as --once (DATABASE_URL, UPSTREAM_BASE_URL and a credential).
`

// runVerify compares the upstream with the mirror and the ledger, writing nothing.
func runVerify(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("usage-sync verify", stderr)
	userArg := fs.String("user", "", "only this user (uuid)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *help {
		_, err := fmt.Fprint(stdout, verifyHelp)
		return err
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "verify takes flags only, got %q", fs.Arg(0))
	}
	user := ""
	if *userArg != "" {
		var ok bool
		if user, ok = userFlag(*userArg); !ok {
			return usageError(stderr, "--user %q is not a UUID: give the user's id from profiles", *userArg)
		}
	}
	a, sy, err := startOperator(ctx, load, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	rep, err := sy.Verify(ctx, user)
	switch {
	case errors.Is(err, syncer.ErrUnknownUser):
		return a.fail(ExitUsage, "verify", fmt.Errorf("--user %s is not in profiles: give the id of a user the dashboard knows", user))
	case err != nil && (store.IsUnavailable(err) || ctx.Err() == nil):
		return a.fail(ExitRuntime, "verify", err)
	case err != nil:
		return a.fail(ExitUsersFailed, "verify", fmt.Errorf("interrupted: %w", err))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = printVerify(stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return &ExitError{Code: ExitUsersFailed, Err: fmt.Errorf("verify: %d users differ, %d unreadable", rep.WithDifferences, rep.Unreadable), Reported: true}
	}
	return nil
}

// printVerify writes one line per user with a difference or a read error, then the total line.
func printVerify(w io.Writer, rep syncer.VerifyReport) error {
	diffs := 0
	for _, u := range rep.Users {
		if u.Error != "" {
			fmt.Fprintf(w, "%s  unreadable: %s (retry verify --user %s)\n", u.UserID, u.Error, u.UserID)
			continue
		}
		if len(u.Differences) == 0 {
			continue
		}
		diffs += len(u.Differences)
		parts := make([]string, len(u.Differences))
		for i, d := range u.Differences {
			if d.Rows > 0 {
				parts[i] = fmt.Sprintf("%s %s: %d differ from the record (fix: %s)", d.Kind, d.Subject, d.Rows, d.Fix)
				continue
			}
			theirs, ours := "upstream", "ours"
			if d.Kind == syncer.DiffMirrorAltered {
				theirs, ours = "record", "mirror" // the worker's record against the dashboard's copy
			}
			parts[i] = fmt.Sprintf("%s %s: %s %d, %s %d (fix: %s)", d.Kind, d.Subject, theirs, d.Upstream, ours, d.Ours, d.Fix)
		}
		fmt.Fprintf(w, "%s  status %s: %s\n", u.UserID, orNone(u.Status), strings.Join(parts, "; "))
	}
	_, err := fmt.Fprintf(w, "total: %d users checked, %d with differences (%d differences), %d unreadable\n",
		rep.Checked, rep.WithDifferences, diffs, rep.Unreadable)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "not enrolled"
	}
	return s
}
