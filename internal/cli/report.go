package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/safetext"
	"github.com/usage-sync/usage-sync/internal/store"
)

// runReport prints one user's usage and charges per UTC day. It only reads, so it needs only
// DATABASE_URL and is safe beside a running daemon.
func runReport(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("usage-sync report", stderr)
	user := fs.String("user", "", "the user (uuid) to report on")
	days := fs.Int("days", 14, "how many UTC days back from today")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *help {
		return writeHelp(stdout)
	}
	if !safetext.IsUUID(*user) {
		return usageError(stderr, "report needs --user UUID, got %q", *user)
	}
	if *days < 1 || *days > 366 {
		return usageError(stderr, "--days %d: give 1 to 366", *days)
	}
	a, err := start(ctx, load, config.ModeDatabase, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.st.CheckSchema(a.startupCtx); err != nil {
		return a.fail(ExitRuntime, "schema", err)
	}
	known, err := a.st.HasUser(a.startupCtx, *user)
	if err != nil {
		return a.fail(ExitRuntime, "report", err)
	}
	if !known {
		// As --once --user does: an id the dashboard does not know is a mistake, not zeros.
		return a.fail(ExitUsage, "report", fmt.Errorf("--user %s is not in profiles: give the id of a user the dashboard knows", *user))
	}
	a.stopStartup()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	rows, err := a.st.Report(ctx, *user, today.AddDate(0, 0, 1-*days), today.AddDate(0, 0, 1))
	if err != nil {
		return a.fail(ExitRuntime, "report", err)
	}
	bal, err := a.st.Balance(ctx, *user)
	if err != nil {
		return a.fail(ExitRuntime, "report", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "day\tkey requests\tpurpose total\tunlisted\ttask emails\tcharged\tdebited\tshortfall\tshadow\t")
	var tot [8]int64
	for _, r := range fromFirstData(rows) {
		v := [8]int64{r.KeyRequests, r.PurposeRequests, r.Unlisted, r.TaskEmails, r.Charged, r.Debited, r.Shortfall, r.ShadowCharged}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Day.Format(time.DateOnly), v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
		for i := range v {
			tot[i] += v[i]
		}
	}
	fmt.Fprintf(w, "total\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", tot[0], tot[1], tot[2], tot[3], tot[4], tot[5], tot[6], tot[7])
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "credits_remaining %d\n", bal)
	return nil
}

// fromFirstData drops the days before the first one with any usage or charge, so a new user's
// report does not open with a column of zeros.
func fromFirstData(rows []store.ReportRow) []store.ReportRow {
	for i, r := range rows {
		if r.KeyRequests != 0 || r.PurposeRequests != 0 || r.TaskEmails != 0 || r.Charged != 0 || r.ShadowCharged != 0 {
			return rows[i:]
		}
	}
	return nil
}
