package cli

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
)

// The exit code after a SIGTERMed run, end to end: `usage-sync --once --all` in a child
// process fails the refused user (claimed first), is SIGTERMed while it reads the next one, and
// exits 1; the next `--once --all` must attempt every user again and exit 1 too (before, it
// joined the dead run's cycle, skipped the refused user and exited 0).
func TestOnceAllAfterASIGTERMedRunExitsNonZero(t *testing.T) {
	t.Parallel()
	dsn, sim, base := simulated(t, 12, 4)
	ids := sim.Users()
	sort.Strings(ids)
	refused := ids[0]
	sim.SetFault(refused, simulator.Fault{Status: 401})
	for _, u := range ids[1:] {
		sim.SetFault(u, simulator.Fault{Delay: time.Minute}) // held until the child gives up
	}
	vars := []string{"UPSTREAM_BASE_URL", base, "UPSTREAM_ADMIN_TOKEN", "adm", "UPSTREAM_RETRY_MAX_ELAPSED", "1s",
		"CHARGE_ENABLED", "true", "SYNC_CONCURRENCY", "1"}

	cmd := exec.Command(os.Args[0], "-test.run=^TestOnceProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "USAGE_SYNC_CLI_HELPER=1", "DATABASE_URL="+dsn, "LOG_LEVEL=info")
	for i := 0; i+1 < len(vars); i += 2 {
		cmd.Env = append(cmd.Env, vars[i]+"="+vars[i+1])
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	var out strings.Builder
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), `"event":"sync.user.failed"`) {
			break
		}
	}
	// The refused user has failed; the child reads the next user, held by the simulator.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != ExitUsersFailed {
		t.Fatalf("the SIGTERMed --once --all exited %d (%v), want %d:\n%s", code, err, ExitUsersFailed, out.String())
	}

	for _, u := range ids[1:] {
		sim.ClearFault(u)
	}
	sim.SetFault(refused, simulator.Fault{Status: 401})
	// The same settings as the child's environment, typed (the child decoded them with config.Load).
	r := run(t, env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL, c.UpstreamAdminToken, c.UpstreamRetryMax = base, "adm", time.Second
		c.ChargeEnabled, c.SyncConcurrency = true, 1
	}), "--once", "--all")
	if r.code != ExitUsersFailed || !strings.Contains(r.stderr, "4 users: 3 synced (0 degraded), 1 failed") || !strings.Contains(r.stderr, refused) {
		t.Fatalf("--once --all after the SIGTERMed run: exit %d, want %d with the refused user failed again:\n%s", r.code, ExitUsersFailed, r.stderr)
	}
	if !strings.Contains(r.stderr, `"joined":false`) {
		t.Errorf("the run joined the dead run's cycle:\n%s", r.stderr)
	}
	var attempts int
	if err := pgtest.Pool(t, dsn).QueryRow(context.Background(),
		`select count(*) from sync_state where status = 'ok'`).Scan(&attempts); err != nil || attempts != 3 {
		t.Fatalf("%d users synced after the second run (%v), want the 3 ordinary ones", attempts, err)
	}
}

// TestOnceProcessHelper is TestOnceAllAfterASIGTERMedRunExitsNonZero's child: `usage-sync
// --once --all` as main runs it (SIGTERM cancels the context), with the environment it was given.
func TestOnceProcessHelper(t *testing.T) {
	if os.Getenv("USAGE_SYNC_CLI_HELPER") != "1" {
		t.Skip("runs only as a child process of the interrupted-run test")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err := Run(ctx, []string{"--once", "--all"}, config.Load, os.Stdout, os.Stderr)
	os.Exit(ExitCode(err))
}
