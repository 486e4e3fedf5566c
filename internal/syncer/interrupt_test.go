package syncer_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// A --once --all after an interrupted run attempts every user again (docs/design.md, "A cycle
// lives while a worker in it does"): the refused user the interrupted run failed fails again,
// visibly, and the users it never reached are synced. Before, the next run joined the dead
// run's cycle, skipped every user it had taken (the refused one included) and reported success.
func TestARunAfterASIGTERMedRunAttemptsEveryUser(t *testing.T) {
	t.Parallel()
	e, refused := interruptSetup(t, 71)
	child := startInterruptedRun(t, e, "term")
	child.waitAtApply(t)
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The child abandons the users still in flight, ends its membership and prints its summary.
	line := child.summary(t)
	if !strings.Contains(line, "ok=false") || !strings.Contains(line, "failed=1") {
		t.Fatalf("the SIGTERMed run's summary %q: want the refused user failed and the run not ok", line)
	}
	if n := e.q(`select count(*) from usage_sync.cycle_member where ended_at is null`); n != 0 {
		t.Fatalf("%d cycle members left live after the SIGTERMed run ended", n)
	}
	checkNextRunAttemptsEveryone(t, e, refused, time.Second)
}

// The same after SIGKILL, twice: the killed runs never end their memberships, so the next run
// must see them dead once their last renewal is SYNC_LEASE_TTL old. The clock moves past the
// TTL instead of the test waiting it out.
func TestARunAfterSIGKILLedRunsAndTheTTLAttemptsEveryUser(t *testing.T) {
	t.Parallel()
	e, refused := interruptSetup(t, 72)
	for i := range 2 {
		child := startInterruptedRun(t, e, "kill")
		child.waitAtApply(t)
		if err := child.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = child.cmd.Wait()
		if i == 0 && e.syncState(refused).Status != "error" {
			t.Fatalf("the first killed run did not fail the refused user first: %+v", e.syncState(refused))
		}
	}
	if n := e.q(`select count(*) from usage_sync.cycle_member where ended_at is null`); n != 2 {
		t.Fatalf("%d unended cycle members after two SIGKILLs; want both left behind", n)
	}
	// Within the TTL the dead runs look live: a run joins their cycle and skips what they hold.
	// That is the price of not knowing a process is dead before its heartbeat is a TTL old.
	checkNextRunAttemptsEveryone(t, e, refused, syncer.LeaseTTLDefault+time.Second)
}

// interruptSetup is 13 users, the one claimed first (the smallest id) always refused with 401.
func interruptSetup(t *testing.T, seed int64) (*env, string) {
	e := setup(t, envConfig{sim: simulator.Config{Seed: seed, Users: 13, KeysPerUser: 1, TasksPerUser: 2, HistoryDays: 1}})
	ids := e.sim.Users()
	sort.Strings(ids)
	e.sim.SetFault(ids[0], simulator.Fault{Status: 401})
	return e, ids[0]
}

// checkNextRunAttemptsEveryone moves the clock by d and runs --once --all: it must start a new
// cycle, fail the refused user again (a newer last_attempt_at than the interrupted runs'
// start), sync every other user, and not be OK.
func checkNextRunAttemptsEveryone(t *testing.T, e *env, refused string, d time.Duration) {
	t.Helper()
	var deadCycle int64
	var deadStart time.Time
	if err := e.db.QueryRow(context.Background(), `select id, started_at from usage_sync.cycle`).Scan(&deadCycle, &deadStart); err != nil {
		t.Fatal(err)
	}
	if n := e.q(`select count(*) from sync_state where cycle_id = $1 or status = 'ok'`, deadCycle); n >= 13 {
		t.Fatalf("the interrupted run took all %d users; the test needs some left untaken", n)
	}
	e.clock.Add(d)
	sum := e.cycle(e.syncer(), syncer.CycleOptions{All: true})
	if sum.Cycle == deadCycle {
		t.Fatalf("--once --all joined the dead run's cycle %d: %+v", deadCycle, sum)
	}
	if sum.OK() || sum.Failed != 1 || len(sum.Failures) != 1 || sum.Failures[0].UserID != refused {
		t.Fatalf("--once --all after the interrupted run: %s; want the refused user failed and the run not OK", sum.Line())
	}
	var newer bool
	if err := e.db.QueryRow(context.Background(), `select last_attempt_at > $2 from sync_state where user_id = $1`, refused, deadStart).Scan(&newer); err != nil || !newer {
		t.Fatalf("the refused user's last_attempt_at is not newer than the interrupted run's start (%v)", err)
	}
	if n := e.q(`select count(*) from sync_state where user_id <> $1 and status <> 'ok'`, refused); n != 0 {
		t.Fatalf("%d ordinary users not synced after --once --all: %s", n, sum.Line())
	}
	if sum.Skipped != 0 {
		t.Fatalf("--once --all skipped %d users, but every worker before it is dead: %s", sum.Skipped, sum.Line())
	}
	e.checkInvariants(false)
}

type interruptedRun struct {
	cmd *exec.Cmd
	out *bufio.Scanner
	in  io.WriteCloser
}

// startInterruptedRun starts TestInterruptedRunHelper in a child process on the test's clock:
// a --once --all worker that stops at its first successful user's apply.
func startInterruptedRun(t *testing.T, e *env, mode string) *interruptedRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInterruptedRunHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "USAGE_SYNC_HELPER=interrupt", "HELPER_MODE="+mode, "HELPER_DSN="+e.dsn, "HELPER_BASE="+e.base,
		"HELPER_CHARGE_FROM="+e.chargeFrom.Format(time.RFC3339Nano), "HELPER_NOW="+e.clock.Now().Format(time.RFC3339Nano))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &interruptedRun{cmd: cmd, out: bufio.NewScanner(stdout), in: in}
}

func (r *interruptedRun) waitAtApply(t *testing.T) {
	t.Helper()
	for r.out.Scan() {
		if r.out.Text() == "at-apply" {
			return
		}
	}
	t.Fatalf("the child run never reached a user's apply: %v", r.out.Err())
}

func (r *interruptedRun) summary(t *testing.T) string {
	t.Helper()
	for r.out.Scan() {
		if s, ok := strings.CutPrefix(r.out.Text(), "summary "); ok {
			_ = r.cmd.Wait()
			return s
		}
	}
	t.Fatalf("the child run printed no summary: %v", r.out.Err())
	return ""
}

// TestInterruptedRunHelper is the child of the interrupted-run tests: a --once --all worker,
// one user at a time, on a clock standing at HELPER_NOW, that announces its first apply of a
// user and holds it until SIGTERM ("term") or forever ("kill", waiting to be killed).
func TestInterruptedRunHelper(t *testing.T) {
	if os.Getenv("USAGE_SYNC_HELPER") != "interrupt" {
		t.Skip("runs only as the interrupted-run tests' child process")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := store.Open(ctx, os.Getenv("HELPER_DSN"), store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	up, err := upstream.New(upstream.Config{BaseURL: os.Getenv("HELPER_BASE"), AdminToken: "test-admin", MaxElapsed: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := time.Parse(time.RFC3339Nano, os.Getenv("HELPER_CHARGE_FROM"))
	if err != nil {
		t.Fatal(err)
	}
	now, err := time.Parse(time.RFC3339Nano, os.Getenv("HELPER_NOW"))
	if err != nil {
		t.Fatal(err)
	}
	s := syncer.New(st, up, nil, syncer.Options{WorkerID: "interrupted-" + os.Getenv("HELPER_MODE"), Concurrency: 1,
		ChargeEnabled: true, ChargeFrom: &cf})
	s.SetClock(func() time.Time { return now })
	first := true
	s.SetHooks(&syncer.Hooks{BeforeApply: func(context.Context, string) error {
		if !first {
			return nil
		}
		first = false
		fmt.Println("at-apply")
		if os.Getenv("HELPER_MODE") == "kill" {
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // blocks until the parent kills us
		}
		<-ctx.Done()
		return nil
	}})
	sum, err := s.RunCycle(ctx, syncer.CycleOptions{All: true})
	fmt.Printf("summary ok=%t failed=%d abandoned=%d err=%v\n", sum.OK(), sum.Failed, sum.Abandoned, err)
}
