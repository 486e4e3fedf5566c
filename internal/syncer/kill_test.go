package syncer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// TestKilledWorkerProcess runs a worker in a child process, kills it with SIGKILL while a user
// sits between its upstream reads and its write transaction, and checks that nothing of that
// user landed, that its lease keeps other workers off until it expires, and that the next
// worker then charges everything exactly once.
func TestKilledWorkerProcess(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{sim: simulator.Config{Seed: 31, Users: 3, KeysPerUser: 2, TasksPerUser: 4, HistoryDays: 2}})
	cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "USAGE_SYNC_HELPER=1", "HELPER_DSN="+e.dsn, "HELPER_BASE="+e.base,
		"HELPER_CHARGE_FROM="+e.chargeFrom.Format(time.RFC3339Nano))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var victim string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "at-apply "); ok {
			victim = u
			break
		}
	}
	if victim == "" {
		_ = cmd.Process.Kill()
		t.Fatalf("the child worker never reached a user's apply: %v", sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	if n := e.q(`select count(*) from credit_ledger where user_id = $1`, victim); n != 0 {
		t.Fatalf("the killed worker left %d ledger rows for the user it was applying", n)
	}
	if n := e.q(`select count(*) from tasks where user_id = $1`, victim); n != 0 {
		t.Fatalf("the killed worker left %d task rows for the user it was applying", n)
	}
	e.checkInvariants(false)

	// The dead worker held the user it was applying and, claimed while that user was read, the
	// next one (claimLoop): each stays skipped while its lease lives.
	held := e.q(`select count(*) from sync_state where lease_owner = 'doomed'`)
	if held < 1 || held > 2 {
		t.Fatalf("the killed worker (one reader) held %d leases, want the user it was applying and at most the next", held)
	}
	s := e.syncer()
	sum := e.cycle(s, syncer.CycleOptions{All: true})
	if int64(sum.Skipped) != held {
		t.Fatalf("summary %+v; want the dead worker's %d users skipped while their leases live", sum, held)
	}
	// Let the dead worker's lease run out (as SYNC_LEASE_TTL would), then sync again.
	if _, err := e.db.Exec(context.Background(), `update sync_state set lease_expires_at = $1::timestamptz - interval '1 second' where lease_owner = 'doomed'`, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	sum = e.cycle(s, syncer.CycleOptions{All: true})
	if sum.Synced == 0 || !sum.OK() {
		t.Fatalf("after the lease expired: %+v", sum)
	}
	e.checkInvariants(true)
}

// TestWorkerProcessHelper is the child of TestKilledWorkerProcess: a worker that announces each
// user it is about to apply and then waits to be killed.
func TestWorkerProcessHelper(t *testing.T) {
	if os.Getenv("USAGE_SYNC_HELPER") != "1" {
		t.Skip("runs only as TestKilledWorkerProcess's child process")
	}
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv("HELPER_DSN"), store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	up, err := upstream.New(upstream.Config{BaseURL: os.Getenv("HELPER_BASE"), AdminToken: "test-admin", Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := time.Parse(time.RFC3339Nano, os.Getenv("HELPER_CHARGE_FROM"))
	if err != nil {
		t.Fatal(err)
	}
	s := syncer.New(st, up, nil, syncer.Options{WorkerID: "doomed", Concurrency: 1, ChargeEnabled: true, ChargeFrom: &cf})
	first := true
	s.SetHooks(&syncer.Hooks{BeforeApply: func(ctx context.Context, user string) error {
		if !first {
			return nil
		}
		first = false
		fmt.Printf("at-apply %s\n", user)
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // blocks until the parent kills us
		return nil
	}})
	_, _ = s.RunCycle(ctx, syncer.CycleOptions{All: true})
}
