package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/store"
)

// setup returns a store on a fresh database with users holding the given balances, and the
// test's own pool on that database for seeding and inspecting rows.
func setup(t testing.TB, balances ...int) (*store.Store, *pgxpool.Pool, []string) {
	t.Helper()
	st, dsn := pgtest.Open(t, pgtest.Plain)
	db := pgtest.Pool(t, dsn)
	users := make([]string, len(balances))
	for i, b := range balances {
		users[i] = fmt.Sprintf("22222222-0000-4000-8000-%012d", i+1)
		_, err := db.Exec(context.Background(), `
			with p as (insert into profiles (user_id) values ($1))
			insert into user_credits (user_id, credits_remaining) values ($1, $2)`, users[i], b)
		if err != nil {
			t.Fatal(err)
		}
	}
	return st, db, users
}

func balance(t testing.TB, db *pgxpool.Pool, user string) int64 {
	t.Helper()
	var b int64
	if err := db.QueryRow(context.Background(), `select credits_remaining from user_credits where user_id = $1`, user).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

type ledgerSums struct{ rows, amount, debited int64 }

func sums(t testing.TB, db *pgxpool.Pool, user, sourceLike string) ledgerSums {
	t.Helper()
	var s ledgerSums
	err := db.QueryRow(context.Background(), `
		select count(*), coalesce(sum(amount), 0), coalesce(sum(debited), 0) from credit_ledger
		where user_id = $1 and source like $2`, user, sourceLike).Scan(&s.rows, &s.amount, &s.debited)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestChargeIncrementsReplaysAndShortfall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users := setup(t, 100)
	u := users[0]
	key := func(total int64) store.Charge {
		return store.Charge{UserID: u, Family: store.FamilyKey, Subject: "k1/2026-11-20", Total: total}
	}
	task := func(total int64) store.Charge {
		return store.Charge{UserID: u, Family: store.FamilyTask, Subject: "t1", Total: total}
	}
	steps := []struct {
		name             string
		batch            []store.Charge
		wantPosted       int
		wantAmount       int64
		wantDebited      int64
		wantBalance      int64
		wantRevisionDown int
	}{
		{"first observations", []store.Charge{task(30), key(50)}, 2, 80, 80, 20, 0},
		{"replay is a no-op", []store.Charge{task(30), key(50)}, 0, 0, 0, 20, 0},
		{"older observation posts nothing, reported as a revision", []store.Charge{key(40)}, 0, 0, 0, 20, 1},
		{"window grows: increment only, balance runs out", []store.Charge{key(80)}, 1, 30, 20, 0, 0},
		{"task revised up: task_adjust with nothing left to debit", []store.Charge{task(35)}, 1, 5, 0, 0, 0},
		{"task revised down: logged, not refunded", []store.Charge{task(33)}, 0, 0, 0, 0, 1},
		{"same subject twice in one batch counts once, at its highest total", []store.Charge{key(90), key(85)}, 1, 10, 0, 0, 0},
	}
	for _, s := range steps {
		res, err := st.Charge(ctx, s.batch, false)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(res.Posted) != s.wantPosted || res.Amount != s.wantAmount || res.Debited != s.wantDebited || len(res.Revisions) != s.wantRevisionDown {
			t.Fatalf("%s: posted %d rows, amount %d, debited %d, %d revisions down; want %d, %d, %d, %d",
				s.name, len(res.Posted), res.Amount, res.Debited, len(res.Revisions), s.wantPosted, s.wantAmount, s.wantDebited, s.wantRevisionDown)
		}
		if b := balance(t, db, u); b != s.wantBalance {
			t.Fatalf("%s: balance %d, want %d", s.name, b, s.wantBalance)
		}
	}
	all := sums(t, db, u, "%")
	if all.debited != 100-balance(t, db, u) {
		t.Fatalf("I1 broken: debited %d, balance moved by %d", all.debited, 100-balance(t, db, u))
	}
	if k := sums(t, db, u, "key_requests"); k.amount != 90 {
		t.Fatalf("key window charged %d in all, want its highest total 90", k.amount)
	}
	var sources []string
	rows, _ := db.Query(ctx, `select source || ' ' || source_id || ' ' || amount || ' ' || debited || ' ' || credits_after from credit_ledger order by id`)
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		sources = append(sources, s)
	}
	want := []string{"task t1 30 30 70", "key_requests k1/2026-11-20/50 50 50 20", "key_requests k1/2026-11-20/80 30 20 0", "task_adjust t1/35 5 0 0", "key_requests k1/2026-11-20/90 10 0 0"}
	if fmt.Sprint(sources) != fmt.Sprint(want) {
		t.Fatalf("ledger:\n got %v\nwant %v", sources, want)
	}
}

func TestShadowRowsNeverStandInForCharges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users := setup(t, 50)
	u := users[0]
	c := []store.Charge{{UserID: u, Family: store.FamilyKey, Subject: "k/2026-11-20", Total: 40}, {UserID: u, Family: store.FamilyTask, Subject: "t", Total: 5}}
	res, err := st.Charge(ctx, c, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Amount != 45 || res.Debited != 0 || balance(t, db, u) != 50 {
		t.Fatalf("shadow: amount %d debited %d balance %d; want 45, 0, 50", res.Amount, res.Debited, balance(t, db, u))
	}
	if s := sums(t, db, u, "shadow:%"); s.rows != 2 {
		t.Fatalf("shadow rows = %d, want 2", s.rows)
	}
	res, err = st.Charge(ctx, c, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Amount != 45 || res.Debited != 45 || balance(t, db, u) != 5 {
		t.Fatalf("live after shadow: amount %d debited %d balance %d; want 45, 45, 5", res.Amount, res.Debited, balance(t, db, u))
	}
}

// Many workers replaying overlapping observations for the same users at once must charge each
// increment once and never overdraw: the charging transaction reads what was charged under a lock.
func TestConcurrentChargesNeverDoubleOrOverdraw(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users := setup(t, 1000, 120, 0)
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for step := int64(1); step <= 20; step++ {
				var batch []store.Charge
				for i, u := range users {
					// Each worker sees the windows at a slightly different moment.
					total := step*10 + int64((w+i)%3)
					batch = append(batch,
						store.Charge{UserID: u, Family: store.FamilyKey, Subject: "k/2026-11-20", Total: total},
						store.Charge{UserID: u, Family: store.FamilyTask, Subject: fmt.Sprintf("t%d", step), Total: 3})
				}
				if _, err := st.Charge(ctx, batch, false); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	start := map[string]int64{users[0]: 1000, users[1]: 120, users[2]: 0}
	for _, u := range users {
		s := sums(t, db, u, "%")
		if got := start[u] - balance(t, db, u); got != s.debited {
			t.Errorf("user %s: balance moved by %d but ledger debited %d", u, got, s.debited)
		}
		if k := sums(t, db, u, "key_requests"); k.amount > 202 || k.amount < 200 {
			t.Errorf("user %s: key window charged %d, want the highest observed total (200..202)", u, k.amount)
		}
		if tk := sums(t, db, u, "task"); tk.amount != 60 || tk.rows != 20 {
			t.Errorf("user %s: tasks charged %d in %d rows, want 60 in 20", u, tk.amount, tk.rows)
		}
		if balance(t, db, u) < 0 {
			t.Errorf("user %s: negative balance", u)
		}
	}
}

func TestLedgerIsAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, users := setup(t, 10)
	if _, err := st.Charge(ctx, []store.Charge{{UserID: users[0], Family: store.FamilyTask, Subject: "t", Total: 1}}, false); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`update credit_ledger set amount = 2`, `delete from credit_ledger`, `truncate credit_ledger`} {
		if _, err := db.Exec(ctx, q); err == nil {
			t.Errorf("%q succeeded on the append-only ledger", q)
		}
	}
}

// BenchmarkCharge measures set-based ledger throughput: batches of 20 users x 50 charges.
func BenchmarkCharge(b *testing.B) {
	const users, perUser = 20, 50
	bal := make([]int, users)
	for i := range bal {
		bal[i] = 1 << 30
	}
	st, _, ids := setup(b, bal...)
	ctx := context.Background()
	b.ResetTimer()
	rows := 0
	for n := 0; n < b.N; n++ {
		batch := make([]store.Charge, 0, users*perUser)
		for _, u := range ids {
			for k := range perUser {
				batch = append(batch, store.Charge{UserID: u, Family: store.FamilyKey, Subject: fmt.Sprintf("key%d/%d", k, n), Total: int64(k + 1)})
			}
		}
		res, err := st.Charge(ctx, batch, false)
		if err != nil {
			b.Fatal(err)
		}
		rows += len(res.Posted)
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "ledger_rows/s")
}

// A user the dashboard gave no user_credits row is charged with nothing debited: the worker
// records the usage as shortfall and never creates a balance.
func TestChargeUserWithoutBalanceRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db, _ := setup(t)
	const u = "22222222-0000-4000-8000-0000000000ff"
	if _, err := db.Exec(ctx, `insert into profiles (user_id) values ($1)`, u); err != nil {
		t.Fatal(err)
	}
	res, err := st.Charge(ctx, []store.Charge{{UserID: u, Family: store.FamilyTask, Subject: "t", Total: 4}}, false)
	if err != nil || res.Amount != 4 || res.Debited != 0 || res.Shortfall() != 4 {
		t.Fatalf("charge = %+v, %v; want amount 4, nothing debited", res, err)
	}
	var n int
	if err := db.QueryRow(ctx, `select count(*) from user_credits where user_id = $1`, u).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the worker created a balance row (%d, %v)", n, err)
	}
}
