package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// quietTimeout bounds the wait for other sessions to end (and so flush their statistics).
const quietTimeout = 30 * time.Second

// TableWrites waits until no client session but the excluded backends is connected to the
// database at dsn (a backend flushes its statistics before it leaves pg_stat_activity), then
// returns, per table ("schema.name"), n_tup_ins + n_tup_upd + n_tup_del from a fresh snapshot;
// walBytes is the cluster's WAL position. Two readings around a run give the rows it wrote.
func TableWrites(t testing.TB, dsn string, exclude ...uint32) (writes map[string]int64, walBytes int64) {
	t.Helper()
	if exclude == nil {
		exclude = []uint32{}
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect for statistics: %v", err)
	}
	defer c.Close(ctx)
	deadline := time.Now().Add(quietTimeout)
	for {
		var others int
		if err := c.QueryRow(ctx, `select count(*) from pg_stat_activity
			where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
			and pid <> all($1::int[])`, exclude).Scan(&others); err != nil {
			t.Fatalf("read pg_stat_activity: %v", err)
		}
		if others == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still connected %v after the run", others, quietTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling the database's state, not timing the code
	}
	if _, err := c.Exec(ctx, `select pg_stat_clear_snapshot()`); err != nil {
		t.Fatalf("clear stats snapshot: %v", err)
	}
	writes = map[string]int64{}
	rows, err := c.Query(ctx, `select schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del from pg_stat_user_tables`)
	if err != nil {
		t.Fatalf("read pg_stat_user_tables: %v", err)
	}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatalf("scan pg_stat_user_tables: %v", err)
		}
		writes[name] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read pg_stat_user_tables: %v", err)
	}
	if err := c.QueryRow(ctx, `select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`).Scan(&walBytes); err != nil {
		t.Fatalf("read pg_current_wal_lsn: %v", err)
	}
	return writes, walBytes
}

// QueryInt runs a query of one integer on its own connection, closed before it returns (so it
// leaves no session behind for TableWrites to wait on).
func QueryInt(t testing.TB, dsn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	withConn(t, dsn, func(c *pgx.Conn) error { return c.QueryRow(context.Background(), sql, args...).Scan(&n) })
	return n
}
