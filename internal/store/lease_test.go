package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/usage-sync/usage-sync/internal/store"
)

func TestLeasesFenceAStaleWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users, req, a := claimedByA(t)
	if b, err := st.Claim(ctx, req("b")); err != nil || b != nil {
		t.Fatalf("b claimed a live lease: %v %v", b, err)
	}
	if l, _ := st.LeftToOthers(ctx, req("b")); l.Leased != 1 || len(l.LeasedUsers) != 1 || l.LeasedUsers[0] != a.UserID {
		t.Fatalf("LeftToOthers = %+v, want the one user a holds", l)
	}
	// a stalls past its lease (as a crashed or paused worker would); b takes the user over.
	if _, err := db.Exec(ctx, `update sync_state set lease_expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	b, err := st.Claim(ctx, req("b"))
	if err != nil || b == nil || b.Token <= a.Token {
		t.Fatalf("b could not take over an expired lease: %+v %v", b, err)
	}
	charge := []store.Charge{{UserID: users[0], Family: store.FamilyTask, Subject: "t", Total: 3}}
	if _, err := st.Apply(ctx, a, &store.Plan{RunID: "a", Charges: charge}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale worker's apply = %v, want ErrLeaseLost", err)
	}
	if err := st.Renew(ctx, a, time.Minute); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale worker's renew = %v, want ErrLeaseLost", err)
	}
	if _, err := st.RecordFailure(ctx, a, store.Failure{Error: "x", Backoff: time.Minute}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale worker's failure record = %v, want ErrLeaseLost", err)
	}
	if n := balance(t, db, users[0]); n != 10 {
		t.Fatalf("the stale worker's charges landed: balance %d", n)
	}
	res, err := st.Apply(ctx, b, &store.Plan{RunID: "b", Charges: charge})
	if err != nil || res.Charge.Debited != 3 || res.Status != "ok" {
		t.Fatalf("current worker's apply = %+v, %v", res, err)
	}
}

func TestTransactionPoolerModeRunsWithoutPreparedStatements(t *testing.T) {
	t.Parallel()
	if got := store.ResolvePoolMode("auto", 6543); got != "transaction" {
		t.Fatalf("port 6543 resolves to %q", got)
	}
	if got := store.ResolvePoolMode("auto", 5432); got != "session" {
		t.Fatalf("port 5432 resolves to %q", got)
	}
	ctx := context.Background()
	_, db, users := setup(t, 5)
	dsn := db.Config().ConnString()
	st, err := store.Open(ctx, dsn, store.Options{MaxConns: 1, PoolMode: "transaction"}) // one connection: the check below sees the one that charged
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.PoolMode() != "transaction" {
		t.Fatalf("mode %s", st.PoolMode())
	}
	res, err := st.Charge(ctx, []store.Charge{{UserID: users[0], Family: store.FamilyKey, Subject: "k/2026-01-01", Total: 4}}, false)
	if err != nil || res.Debited != 4 {
		t.Fatalf("charge in transaction mode: %+v %v", res, err)
	}
	// The store's own pool, not the test's: it is the store's one connection that must hold no
	// prepared statement.
	var prepared int
	if err := st.Pool().QueryRow(ctx, `select count(*) from pg_prepared_statements`).Scan(&prepared); err != nil || prepared != 0 {
		t.Fatalf("%d prepared statements on a transaction-mode connection (%v)", prepared, err)
	}
}

// The fence a worker holds while it writes does not stop its own lease from being renewed, while
// a claim by another worker still skips the row rather than waiting or taking it. The bounded
// contexts only turn a regression (a renewal blocked behind the fence) into a failure instead of
// a hang; nothing here measures time.
func TestRenewalNeverWaitsOnTheFence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users, req, a := claimedByA(t)
	end, err := st.HoldFence(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer end()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.Renew(rctx, a, time.Minute); err != nil {
		t.Fatalf("renewal while the worker's own transaction holds the fence: %v", err)
	}
	// Even past its expiry, a fenced row is skipped by another worker's claim, not taken.
	if _, err := db.Exec(ctx, `update sync_state set lease_expires_at = now() - interval '1 second' where user_id = $1`, users[0]); err != nil {
		t.Fatal(err)
	}
	if b, err := st.Claim(rctx, req("b")); err != nil || b != nil {
		t.Fatalf("b claimed a row fenced by a writing worker: %+v %v", b, err)
	}
	end()
	if b, err := st.Claim(rctx, req("b")); err != nil || b == nil {
		t.Fatalf("b could not claim the expired lease once the fence was gone: %+v %v", b, err)
	}
}

// claimedByA enrols ten users and has worker "a" claim the first; req builds a claim of that
// user for another owner.
func claimedByA(t *testing.T) (*store.Store, *pgxpool.Pool, []string, func(owner string) store.ClaimRequest, *store.Lease) {
	t.Helper()
	ctx := context.Background()
	st, db, users := setup(t, 10)
	if _, err := st.Enrol(ctx, nil, ""); err != nil {
		t.Fatal(err)
	}
	req := func(owner string) store.ClaimRequest {
		return store.ClaimRequest{Owner: owner, RunID: owner, TTL: time.Minute, UserID: users[0]}
	}
	a, err := st.Claim(ctx, req("a"))
	if err != nil || a == nil {
		t.Fatalf("a claims: %v %v", a, err)
	}
	return st, db, users, req, a
}
