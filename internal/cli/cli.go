// Package cli is the composition root: it parses the command line, loads the configuration and
// wires the store, the upstream client, the syncer and the schedule together.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/logging"
	"github.com/usage-sync/usage-sync/internal/safetext"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// Set by the Makefile through -ldflags "-X .../internal/cli.version=... -X .../internal/cli.commit=...".
var (
	version = "dev"
	commit  = "dev"
)

// Exit codes; --help documents them.
const (
	ExitOK          = 0
	ExitUsersFailed = 1 // --once: some user failed or was abandoned
	ExitUsage       = 2 // bad command line or configuration
	ExitRuntime     = 3 // database unreachable, schema outdated, upstream misconfigured, ...
)

// startupTimeout bounds opening the database and checking its schema, so an unreachable host
// fails the start rather than hanging for the TCP timeout.
const startupTimeout = 30 * time.Second

// ExitError is an error that decides the process's exit code.
type ExitError struct {
	Code int
	Err  error
	// Reported says Run already wrote the error to stderr (as text or as a log line), so main
	// must not print it again.
	Reported bool
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode maps Run's error to the process exit code: 0 for nil, the code of an *ExitError, and
// ExitRuntime for anything else.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitRuntime
}

// Reported reports whether Run already wrote err to stderr.
func Reported(err error) bool {
	var ee *ExitError
	return errors.As(err, &ee) && ee.Reported
}

// Load is where a run's configuration comes from: config.Load (the process environment) in
// main, a typed config.Config in tests. Run calls it only for a command that needs it, so help
// and --version work whatever the environment holds.
type Load func() (config.Config, error)

// command is one of Run's subcommands.
type command struct {
	name string
	run  func(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error
}

// commands are Run's subcommands; the unknown-command message names them from here.
func commands() []command {
	return []command{
		{"migrate", runMigrate},
		{"report", runReport},
		{"resync", runResync},
		{"verify", runVerify},
		{"pause", runPause},
		{"resume", runResume},
		{"help", func(_ context.Context, _ []string, _ Load, stdout, _ io.Writer) error { return writeHelp(stdout) }},
	}
}

// Run executes the command line args (without the program name). It honours ctx: cancelling it
// stops the daemon gracefully and makes --once abandon the users still in flight.
func Run(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		for _, c := range commands() {
			if c.name == args[0] {
				return c.run(ctx, args[1:], load, stdout, stderr)
			}
		}
	}
	return runSync(ctx, args, load, stdout, stderr)
}

// commandNames is "migrate, report, ... and help", for the unknown-command message.
func commandNames() string {
	cmds := commands()
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// usageError prints msg and the short usage to stderr.
func usageError(stderr io.Writer, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	fmt.Fprintf(stderr, "usage-sync: %v\n", err)
	fmt.Fprint(stderr, shortUsage)
	return &ExitError{Code: ExitUsage, Err: err, Reported: true}
}

// newFlagSet returns a flag set that prints errors and the short usage to stderr, with -h and
// --help defined so that help goes to stdout and exits 0 rather than being a parse error.
func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, shortUsage) }
	help := fs.Bool("help", false, "show help")
	fs.BoolVar(help, "h", false, "show help")
	return fs, help
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		// The flag package has printed the problem and the usage.
		return &ExitError{Code: ExitUsage, Err: err, Reported: true}
	}
	return nil
}

func runSync(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("usage-sync", stderr)
	once := fs.Bool("once", false, "run one cycle and exit")
	all := fs.Bool("all", false, "with --once: include users backing off after failures")
	user := fs.String("user", "", "with --once: sync only this user")
	showVersion := fs.Bool("version", false, "print the version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *help {
		return writeHelp(stdout)
	}
	if *showVersion {
		_, err := fmt.Fprintf(stdout, "usage-sync %s (%s)\n", version, commit)
		return err
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "unknown command %q: the commands are %s", fs.Arg(0), commandNames())
	}
	userSet := false
	fs.Visit(func(f *flag.Flag) { userSet = userSet || f.Name == "user" })
	if (*all || userSet) && !*once {
		return usageError(stderr, "--all and --user select the users of a --once run: add --once")
	}
	userID := strings.ToLower(strings.TrimSpace(*user))
	if userSet && !safetext.IsUUID(userID) {
		return usageError(stderr, "--user %q is not a UUID: give the user's id from profiles, such as 3f2b5c9e-0a7d-4e61-9a51-2c1f0f6e8b2d", *user)
	}

	// --once fails fast when the database is not there (a CronJob retries it); the daemon
	// starts without it and waits (waitForDatabase), serving its probes meanwhile.
	open := store.Open
	if !*once {
		open = store.New
	}
	app, err := startWith(ctx, load, config.ModeSync, stderr, open)
	if err != nil {
		return err
	}
	defer app.close()

	if *once {
		if err := app.st.CheckSchema(app.startupCtx); err != nil {
			if errors.Is(err, store.ErrSchemaOutdated) {
				return app.fail(ExitRuntime, "check schema", err)
			}
			return app.fail(ExitRuntime, "check schema", fmt.Errorf("check schema: %w", err))
		}
	}
	var ob *ops
	if addr := app.cfg.MetricsListen(*once); addr != "" {
		ob = app.newOps(addr)
		// The daemon serves them in its lifecycle (daemon), --once from here to its end.
		if *once {
			if err := ob.listen(app); err != nil {
				return app.fail(ExitRuntime, "metrics", err)
			}
			defer ob.close(ctx)
		}
	}
	upCfg := app.cfg.Upstream(userAgent(), app.log)
	syOpts := app.cfg.Syncer(app.workerID)
	if ob != nil {
		upCfg.Observer, syOpts.Observer = ob.metrics, ob.metrics
	}
	up, err := upstream.New(upCfg)
	if err != nil {
		return app.fail(ExitRuntime, "configure upstream", fmt.Errorf("configure upstream client: %w", err))
	}
	defer up.CloseIdleConnections()
	app.stopStartup()
	sy := syncer.New(app.st, up, app.log, syOpts)

	if *once {
		return app.once(ctx, sy, syncer.CycleOptions{All: *all, UserID: userID, Trigger: "once"}, stderr)
	}
	return app.daemon(ctx, sy, ob)
}

func (a *app) once(ctx context.Context, sy *syncer.Syncer, o syncer.CycleOptions, stderr io.Writer) error {
	sum, err := sy.RunCycle(ctx, o)
	if err != nil {
		if errors.Is(err, syncer.ErrUnknownUser) {
			return a.fail(ExitUsage, "run cycle", fmt.Errorf("--user %s is not in profiles: give the id of a user the dashboard knows", o.UserID))
		}
		if ctx.Err() != nil {
			// Stopped by a signal before or while claiming: users were left unsynced, as when
			// they are abandoned, and nothing is wrong with the database.
			return a.fail(ExitUsersFailed, "run cycle", fmt.Errorf("interrupted: %w", err))
		}
		return a.fail(ExitRuntime, "run cycle", fmt.Errorf("run cycle: %w", err))
	}
	fmt.Fprintln(stderr, sum.Line())
	if !sum.OK() {
		return &ExitError{
			Code:     ExitUsersFailed,
			Err:      fmt.Errorf("%d users failed and %d were abandoned", sum.Failed, sum.Abandoned),
			Reported: true,
		}
	}
	return nil
}

func runMigrate(ctx context.Context, args []string, load Load, stdout, stderr io.Writer) error {
	fs, help := newFlagSet("usage-sync migrate", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *help {
		return writeHelp(stdout)
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "migrate takes no arguments, got %q", fs.Arg(0))
	}
	app, err := start(ctx, load, config.ModeMigrate, stderr)
	if err != nil {
		return err
	}
	defer app.close()
	app.stopStartup()
	applied, err := app.st.Migrate(ctx)
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied migration %s\n", v)
	}
	var exposed *store.ExposedError
	if errors.As(err, &exposed) {
		return app.failExposed(exposed)
	}
	if err != nil {
		return app.fail(ExitRuntime, "migrate", fmt.Errorf("migrate: %w", err))
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "schema up to date at version %d\n", store.SchemaVersion())
	}
	return nil
}

// app is what every command that touches the database starts from.
type app struct {
	cfg      config.Config
	log      *zap.Logger
	st       *store.Store
	workerID string
	stderr   io.Writer
	// startupCtx bounds the start-up steps; stopStartup releases it once they are done.
	startupCtx  context.Context
	stopStartup context.CancelFunc
}

// start loads and validates the configuration for mode, builds the logger and opens the store,
// failing when the database does not answer.
func start(ctx context.Context, load Load, mode config.Mode, stderr io.Writer) (*app, error) {
	return startWith(ctx, load, mode, stderr, store.Open)
}

// startWith is start with the function that opens the store: store.Open (connect now) or
// store.New (connect later, for the daemon that waits for its database).
func startWith(ctx context.Context, load Load, mode config.Mode, stderr io.Writer,
	open func(context.Context, string, store.Options) (*store.Store, error)) (*app, error) {
	cfg, loadErr := load()
	if err := errors.Join(loadErr, cfg.Validate(mode)); err != nil {
		fmt.Fprintf(stderr, "usage-sync: the configuration has problems (usage-sync --help lists every variable):\n%v\n", err)
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("invalid configuration: %w", err), Reported: true}
	}
	log, err := logging.New(stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "usage-sync: %v\n", err)
		return nil, &ExitError{Code: ExitUsage, Err: err, Reported: true}
	}
	a := &app{cfg: cfg, log: log, workerID: cfg.WorkerID, stderr: stderr}
	if a.workerID == "" {
		a.workerID = defaultWorkerID()
	}
	// The whole configuration is worth a line when syncing; migrate and report need only the
	// database, so they keep it at debug.
	cfgLevel := zap.InfoLevel
	if mode != config.ModeSync {
		cfgLevel = zap.DebugLevel
	}
	log.Log(cfgLevel, "config.loaded",
		zap.String("version", version), zap.String("commit", commit),
		zap.String("worker_id", a.workerID), zap.Any("config", cfg.Redacted()))
	if w := cfg.InsecureUpstream(); w != "" && mode == config.ModeSync {
		log.Warn("config.insecure_upstream", zap.String("why", w))
	}

	a.startupCtx, a.stopStartup = context.WithTimeout(ctx, startupTimeout)
	st, err := open(a.startupCtx, cfg.DatabaseURL, cfg.Store(log, a.workerID))
	if errors.Is(err, store.ErrBadDSN) {
		a.stopStartup()
		fmt.Fprintf(stderr, "usage-sync: the configuration has problems (usage-sync --help lists every variable):\nDATABASE_URL: %v: give a postgres:// URL or a key=value DSN the driver accepts\n", err)
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("invalid configuration: %w", err), Reported: true}
	}
	if err != nil {
		a.stopStartup()
		return nil, a.fail(ExitRuntime, "open database", err)
	}
	a.st = st
	return a, nil
}

// fail logs err once, as the run's last event, and returns it with its exit code. A runtime
// failure also gets one human line on stderr naming the fix, for whoever reads the terminal
// rather than the JSON.
func (a *app) fail(code int, stage string, err error) error {
	a.log.Error("run.failed", zap.String("stage", stage), zap.Int("exit_code", code), zap.Error(err))
	if code == ExitRuntime && a.stderr != nil {
		if h := hint(err, a.cfg.DatabaseURL); h != "" {
			fmt.Fprintf(a.stderr, "usage-sync: %s\n", h)
		} else {
			fmt.Fprintf(a.stderr, "usage-sync: %s failed: %s\n", stage, safetext.Clean(err.Error(), safetext.MaxDefault))
		}
	}
	return &ExitError{Code: code, Err: err, Reported: true}
}

// failExposed reports migrate's exposure check in full, one line per exposure (fail would cut
// the list to one line of safetext.MaxDefault).
func (a *app) failExposed(e *store.ExposedError) error {
	a.log.Error("run.failed", zap.String("stage", "migrate"), zap.Int("exit_code", ExitRuntime), zap.Error(e))
	fmt.Fprintf(a.stderr, "usage-sync: migrate stopped before changing anything: the dashboard's tables are exposed to the API roles (%d):\n", len(e.Exposures))
	for _, x := range e.Exposures {
		fmt.Fprintf(a.stderr, "  %s\n", safetext.Clean(x.String(), 4*safetext.MaxDefault))
	}
	fmt.Fprintf(a.stderr, "usage-sync: run each fix as the tables' owner (or enable row level security with own-row policies where the dashboard needs the access) and migrate again; MIGRATE_ALLOW_EXPOSED=true migrates anyway (docs/supabase.md)\n")
	return &ExitError{Code: ExitRuntime, Err: fmt.Errorf("migrate: %w", e), Reported: true}
}

func (a *app) close() {
	a.stopStartup()
	a.st.Close()
	_ = a.log.Sync()
}

func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "usage-sync"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// userAgent is the upstream client's User-Agent: the binary's name and version.
func userAgent() string { return "usage-sync/" + version }
