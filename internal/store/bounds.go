package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// How long the worker waits on its database, so a database that accepts connections and never
// answers fails the work in hand instead of holding it (docs/operations.md, "Database waits").
// The bounds are deadlines on the statement's context, not server settings: PgBouncer rejects
// statement_timeout and options as startup parameters ("unsupported startup parameter"), and a
// server-side timeout cannot fire when the server, or a proxy in front of it, never answers.
const (
	// ConnectTimeoutDefault bounds opening one connection (TCP, TLS, start-up and
	// authentication) unless DATABASE_URL sets connect_timeout.
	ConnectTimeoutDefault = 10 * time.Second
	// StatementTimeoutDefault bounds one statement run outside a transaction.
	StatementTimeoutDefault = 30 * time.Second
	// TxTimeoutDefault bounds one transaction, begin to commit: a user's write transaction is
	// the longest the worker runs (the syncer's own bound on it is the same).
	TxTimeoutDefault = 2 * time.Minute
)

// boundedPool is the pool with StatementTimeout on every statement run directly on it (a caller's
// shorter deadline wins). Transactions are bounded as a whole by inTx.
type boundedPool struct {
	*pgxpool.Pool
	timeout time.Duration
}

// bound returns ctx with d as its deadline, unless ctx already ends sooner or d is 0.
func bound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

func (p boundedPool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	ctx, cancel := bound(ctx, p.timeout)
	defer cancel()
	return p.Pool.Exec(ctx, sql, args...)
}

func (p boundedPool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	ctx, cancel := bound(ctx, p.timeout)
	rows, err := p.Pool.Query(ctx, sql, args...)
	if err != nil {
		cancel()
		return nil, err
	}
	return boundedRows{Rows: rows, cancel: cancel}, nil
}

func (p boundedPool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	ctx, cancel := bound(ctx, p.timeout)
	return boundedRow{row: p.Pool.QueryRow(ctx, sql, args...), cancel: cancel}
}

func (p boundedPool) Ping(ctx context.Context) error {
	ctx, cancel := bound(ctx, p.timeout)
	defer cancel()
	return p.Pool.Ping(ctx)
}

// boundedRows releases the statement's deadline when the rows are closed.
type boundedRows struct {
	pgx.Rows
	cancel context.CancelFunc
}

func (r boundedRows) Close() { r.Rows.Close(); r.cancel() }

// boundedRow releases the statement's deadline once the row is scanned.
type boundedRow struct {
	row    pgx.Row
	cancel context.CancelFunc
}

func (r boundedRow) Scan(dest ...any) error {
	defer r.cancel()
	return r.row.Scan(dest...)
}
