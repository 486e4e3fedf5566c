package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/usage-sync/usage-sync/internal/pgtest"
)

// callRequestSync calls public.request_sync() the way PostgREST does for a signed-in user's
// supabase.rpc('request_sync'): role authenticated, the JWT's claims in request.jwt.claims.
// An empty sub is a token without a user; role "anon" is the anonymous key.
func callRequestSync(ctx context.Context, c *pgx.Conn, role, sub string) (bool, error) {
	tx, err := c.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	claims := `{"role": "` + role + `"}`
	if sub != "" {
		claims = `{"sub": "` + sub + `", "role": "` + role + `"}`
	}
	if _, err := tx.Exec(ctx, `select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, role, claims); err != nil {
		return false, err
	}
	var ok bool
	if err := tx.QueryRow(ctx, `select public.request_sync()`).Scan(&ok); err != nil {
		return false, err
	}
	return ok, tx.Commit(ctx)
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

const (
	userA = "0a000000-0000-4000-8000-00000000000a"
	userB = "0b000000-0000-4000-8000-00000000000b"
	userC = "0c000000-0000-4000-8000-00000000000c" // no profile
)

func TestRequestSyncFunction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, dsn := pgtest.Open(t, pgtest.Supabase)
	db := pgtest.Pool(t, dsn)
	pgtest.Exec(t, dsn, `insert into profiles (user_id) values ('`+userA+`'), ('`+userB+`')`)
	c := connect(t, dsn)
	requestedAt := func(u string) *time.Time {
		var at *time.Time
		if err := db.QueryRow(ctx, `select requested_at from sync_state where user_id = $1`, u).Scan(&at); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return at
	}

	// A profile the worker has not enrolled yet: enrolled and requested.
	if ok, err := callRequestSync(ctx, c, "authenticated", userA); err != nil || !ok {
		t.Fatalf("first request: %v, %v", ok, err)
	}
	first := requestedAt(userA)
	if first == nil {
		t.Fatal("no requested_at after a taken request")
	}
	if got, err := st.Requested(ctx, nil, 10, time.Second); err != nil || len(got) != 1 || got[0] != userA {
		t.Fatalf("Requested = %v, %v; want only %s", got, err, userA)
	}
	// Within the minute: refused, nothing changed.
	if ok, err := callRequestSync(ctx, c, "authenticated", userA); err != nil || ok {
		t.Fatalf("second request within the minute: %v, %v", ok, err)
	}
	if again := requestedAt(userA); !again.Equal(*first) {
		t.Fatalf("a refused request moved requested_at from %v to %v", first, again)
	}
	// A minute later it is taken again.
	pgtest.Exec(t, dsn, `update sync_state set requested_at = requested_at - interval '61 seconds' where user_id = '`+userA+`'`)
	if ok, err := callRequestSync(ctx, c, "authenticated", userA); err != nil || !ok {
		t.Fatalf("request a minute later: %v, %v", ok, err)
	}
	// Once the user was attempted after its request, it is no longer requested.
	pgtest.Exec(t, dsn, `update sync_state set last_attempt_at = now() + interval '1 second' where user_id = '`+userA+`'`)
	if got, err := st.Requested(ctx, nil, 10, time.Second); err != nil || len(got) != 0 {
		t.Fatalf("Requested after the attempt = %v, %v", got, err)
	}

	// No profile: false, and no sync_state row appears.
	if ok, err := callRequestSync(ctx, c, "authenticated", userC); err != nil || ok {
		t.Fatalf("user without a profile: %v, %v", ok, err)
	}
	if requestedAt(userC) != nil || pgtestCount(t, db, `select count(*) from sync_state where user_id = '`+userC+`'`) != 0 {
		t.Fatal("a user without a profile got a sync_state row")
	}
	// A token without a user: false.
	if ok, err := callRequestSync(ctx, c, "authenticated", ""); err != nil || ok {
		t.Fatalf("no sub: %v, %v", ok, err)
	}
	// anon may not call it at all.
	if _, err := callRequestSync(ctx, c, "anon", userB); sqlState(err) != "42501" {
		t.Fatalf("anon: %v, want permission denied (42501)", err)
	}
	// Nobody can request someone else's sync: the function takes no user, and sync_state is
	// read-only to signed-in users.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tx.Exec(ctx, `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"sub": "`+userA+`", "role": "authenticated"}', true)`)
	_, err = tx.Exec(ctx, `select public.request_sync('`+userB+`'::uuid)`)
	if sqlState(err) != "42883" {
		t.Fatalf("request_sync(other user): %v, want undefined function (42883)", err)
	}
	_ = tx.Rollback(ctx)
	tx, err = c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tx.Exec(ctx, `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"sub": "`+userA+`", "role": "authenticated"}', true)`)
	_, err = tx.Exec(ctx, `insert into sync_state (user_id, requested_at) values ('`+userB+`', now())`)
	if sqlState(err) != "42501" {
		t.Fatalf("a signed-in user wrote sync_state: %v, want permission denied", err)
	}
	_ = tx.Rollback(ctx)
	if requestedAt(userB) != nil {
		t.Fatal("userB was requested by someone else")
	}
}

func pgtestCount(t *testing.T, db *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Two requests at the same instant (a double click): exactly one is taken, also for a profile
// not yet enrolled, where both race to create the sync_state row. The second call is released
// only once it is seen waiting on the first's lock, so the race is forced, not hoped for.
func TestRequestSyncConcurrentCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, dsn := pgtest.Open(t, pgtest.Supabase)
	db := pgtest.Pool(t, dsn)
	pgtest.Exec(t, dsn, `insert into profiles (user_id) values ('`+userB+`')`)
	c1, c2 := connect(t, dsn), connect(t, dsn)
	set := `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"sub": "` + userB + `", "role": "authenticated"}', true)`

	tx1, err := c1.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback(ctx) }()
	var first bool
	if _, err := tx1.Exec(ctx, set); err != nil {
		t.Fatal(err)
	}
	if err := tx1.QueryRow(ctx, `select public.request_sync()`).Scan(&first); err != nil || !first {
		t.Fatalf("first call: %v, %v", first, err)
	}
	var pid2 uint32 = c2.PgConn().PID()
	second := make(chan error, 1)
	var secondOK bool
	go func() {
		ok, err := callRequestSync(ctx, c2, "authenticated", userB)
		secondOK = ok
		second <- err
	}()
	// Wait until the second call blocks on the first's row (database state, not a timer).
	for {
		var waiting bool
		if err := db.QueryRow(ctx, `select coalesce((select wait_event_type = 'Lock' from pg_stat_activity where pid = $1), false)`, pid2).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-second:
			t.Fatalf("the second call finished while the first held its lock: %v", err)
		default:
		}
	}
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil || secondOK {
		t.Fatalf("second concurrent call: %v, %v; want false", secondOK, err)
	}
	if n := pgtestCount(t, db, `select count(*) from sync_state where user_id = '`+userB+`' and requested_at is not null`); n != 1 {
		t.Fatalf("%d sync_state rows requested", n)
	}
}

// On a database without Supabase's auth nobody is signed in: the function exists and says no.
func TestRequestSyncPlainDatabase(t *testing.T) {
	t.Parallel()
	_, dsn := pgtest.Open(t, pgtest.Plain)
	var ok bool
	if err := pgtest.Pool(t, dsn).QueryRow(context.Background(), `select public.request_sync()`).Scan(&ok); err != nil || ok {
		t.Fatalf("request_sync on a plain database: %v, %v", ok, err)
	}
}
