package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/store"
)

// A pause that arrives while a worker's fenced transaction is open waits for it, then fences the
// worker out: what committed before the pause stands, nothing after it is written. Only an
// operator's claim (resync) takes the paused user; resume puts back the status it had.
func TestPauseWaitsForAFencedTransactionThenFencesTheWorkerOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users, req, a := claimedByA(t)
	u := users[0]

	// Worker a's write transaction in progress, fenced as Apply fences it (FOR KEY SHARE).
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `select 1 from sync_state where user_id = $1 and lease_token = $2 for key share`, u, a.Token); err != nil {
		t.Fatal(err)
	}
	type result struct {
		p   store.Paused
		err error
	}
	paused := make(chan result, 1)
	go func() {
		p, err := st.Pause(ctx, nil, u, "dispute", "support")
		paused <- result{p, err}
	}()
	// Wait, on the database's own word, until the pause is blocked on a's row lock.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for waiting := false; !waiting; {
		select {
		case r := <-paused:
			t.Fatalf("the pause returned while a's fenced transaction was open: %+v", r)
		case <-deadline:
			t.Fatal("the pause never waited on the row lock")
		case <-tick.C:
		}
		if err := db.QueryRow(ctx, `select exists (select 1 from pg_stat_activity
			where datname = current_database() and wait_event_type = 'Lock' and query like '%for update%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-paused
	if r.err != nil || r.p.Interrupted != "a" || r.p.Already {
		t.Fatalf("pause: %+v, %v; want worker a named as interrupted", r.p, r.err)
	}

	charge := []store.Charge{{UserID: u, Family: store.FamilyTask, Subject: "t", Total: 3}}
	if _, err := st.Apply(ctx, a, &store.Plan{RunID: "a", Charges: charge}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a's apply after the pause = %v, want ErrLeaseLost", err)
	}
	if err := st.Renew(ctx, a, time.Minute); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a's renewal after the pause = %v, want ErrLeaseLost", err)
	}
	var ledger int
	if err := db.QueryRow(ctx, `select count(*) from credit_ledger where user_id = $1`, u).Scan(&ledger); err != nil || ledger != 0 {
		t.Fatalf("%d ledger rows after the pause (%v)", ledger, err)
	}
	if b, err := st.Claim(ctx, req("b")); err != nil || b != nil {
		t.Fatalf("a worker claimed the paused user: %+v, %v", b, err)
	}
	op := req("ops")
	op.Operator = true
	o, err := st.Claim(ctx, op)
	if err != nil || o == nil {
		t.Fatalf("an operator's claim of the paused user: %+v, %v; want it taken", o, err)
	}
	if err := st.Release(ctx, o); err != nil {
		t.Fatal(err)
	}

	res, err := st.Resume(ctx, nil, u)
	if err != nil || res.Status != "pending" || res.Paused.Reason != "dispute" {
		t.Fatalf("resume: %+v, %v; want the user back to pending, as it was", res, err)
	}
	if _, err := st.Resume(ctx, nil, u); !errors.Is(err, store.ErrNotPaused) {
		t.Fatalf("second resume = %v, want ErrNotPaused", err)
	}
	if b, err := st.Claim(ctx, req("b")); err != nil || b == nil {
		t.Fatalf("the resumed user could not be claimed: %+v, %v", b, err)
	}
}
