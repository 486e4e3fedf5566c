package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/safetext"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// startOperator starts an operator's command (resync, verify): the configuration as --once
// validates it, the database at the schema this binary needs, and a syncer on the configured
// upstream client. The caller closes the app.
func startOperator(ctx context.Context, load Load, stderr io.Writer) (*app, *syncer.Syncer, error) {
	a, err := start(ctx, load, config.ModeSync, stderr)
	if err != nil {
		return nil, nil, err
	}
	if err := a.st.CheckSchema(a.startupCtx); err != nil {
		defer a.close()
		return nil, nil, a.fail(ExitRuntime, "check schema", err)
	}
	up, err := upstream.New(a.cfg.Upstream(userAgent(), a.log))
	if err != nil {
		defer a.close()
		return nil, nil, a.fail(ExitRuntime, "configure upstream", fmt.Errorf("configure upstream client: %w", err))
	}
	a.stopStartup()
	return a, syncer.New(a.st, up, a.log, a.cfg.Syncer(a.workerID)), nil
}

// dayFlag parses a --from/--to value: a UTC day as YYYY-MM-DD, or "" for none.
func dayFlag(name, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return nil, fmt.Errorf("--%s %q is not a day: give a UTC day as YYYY-MM-DD, such as 2026-11-08", name, v)
	}
	return &d, nil
}

// userFlag normalises a --user value; ok is false when it is not a UUID.
func userFlag(v string) (string, bool) {
	u := strings.ToLower(strings.TrimSpace(v))
	return u, safetext.IsUUID(u)
}
