// Package store is the worker's only door to PostgreSQL: every SQL statement it runs lives here.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Options size and shape the connection pool.
type Options struct {
	// MaxConns bounds the pool; the syncer needs one per concurrent user plus one for claims.
	MaxConns int32
	// PoolMode is "session", "transaction" or "auto" (transaction on port 6543, Supabase's
	// transaction pooler). In transaction mode no statement is prepared or cached, because a
	// pooler hands each transaction a different server connection.
	PoolMode string
	Logger   *zap.Logger
	// AllowExposed lets Migrate proceed past exposures of the dashboard's tables to the API
	// roles, with a warning each (MIGRATE_ALLOW_EXPOSED).
	AllowExposed bool
	// ConnectTimeout, StatementTimeout and TxTimeout bound the waits on the database (bounds.go);
	// zero means the …Default. ConnectTimeout applies only when DATABASE_URL sets no
	// connect_timeout.
	ConnectTimeout, StatementTimeout, TxTimeout time.Duration
	// ApplicationName is every connection's application_name (ApplicationName), unless
	// DATABASE_URL sets one; "" leaves the driver's (none).
	ApplicationName string
}

// ApplicationName is the application_name of a worker's connections, so that pg_stat_activity
// (and a pooler's SHOW CLIENTS) names the worker: "usage-sync " and its worker id, cut to the
// 63 bytes PostgreSQL keeps (NAMEDATALEN - 1) on a rune boundary, rather than by the server
// mid-rune.
func ApplicationName(workerID string) string {
	s := "usage-sync " + workerID
	for len(s) > applicationNameMax {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

const applicationNameMax = 63

// Store wraps a pgx pool.
type Store struct {
	pool         boundedPool
	log          *zap.Logger
	txTimeout    time.Duration
	allowExposed bool
}

// Open is New followed by a ping, so a wrong URL or an unreachable database fails at start-up
// rather than on the first cycle (--once, migrate, report). Errors never contain the password.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	s, err := New(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.Close()
		return nil, &openError{msg: fmt.Sprintf("connect to database %s: %s", Describe(dsn), redactErr(err, dsn)), err: err}
	}
	return s, nil
}

// New parses dsn and builds the pool without connecting: the daemon starts this way and waits
// for the database itself (Ping, Ready). The only error is a DSN the driver rejects.
func New(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, &openError{msg: fmt.Sprintf("%v: %s", ErrBadDSN, redactErr(err, dsn)), err: ErrBadDSN}
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	mode := resolvePoolMode(opts.PoolMode, cfg.ConnConfig.Port)
	if mode == "transaction" {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		cfg.ConnConfig.StatementCacheCapacity = 0
		cfg.ConnConfig.DescriptionCacheCapacity = 0
	}
	// A startup parameter, sent once per server connection: a transaction pooler passes it on
	// only if it tracks it (docs/supabase.md, "The connection string").
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set && opts.ApplicationName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = opts.ApplicationName
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = orDefault(opts.ConnectTimeout, ConnectTimeoutDefault)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &openError{msg: fmt.Sprintf("open database %s: %s", Describe(dsn), redactErr(err, dsn)), err: err}
	}
	return &Store{
		pool:         boundedPool{Pool: pool, timeout: orDefault(opts.StatementTimeout, StatementTimeoutDefault)},
		log:          log,
		txTimeout:    orDefault(opts.TxTimeout, TxTimeoutDefault),
		allowExposed: opts.AllowExposed,
	}, nil
}

// Ping checks that the database answers, within the statement bound.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// ErrBadDSN means the driver rejects DATABASE_URL itself (a bad sslmode, a port that is not a
// number): a configuration error, not a runtime one.
var ErrBadDSN = errors.New("DATABASE_URL is not a connection string the driver accepts")

// openError is a failure to open the database: its text has the password blanked out, its
// chain keeps the cause so callers can tell a missing database from one that is down.
type openError struct {
	msg string
	err error
}

func (e *openError) Error() string { return e.msg }
func (e *openError) Unwrap() error { return e.err }

// resolvePoolMode turns "auto" into "session" or "transaction".
func resolvePoolMode(mode string, port uint16) string {
	switch mode {
	case "session", "transaction":
		return mode
	}
	if port == supabasePoolerPort {
		return "transaction"
	}
	return "session"
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// inTx runs fn in a transaction bounded by TxTimeout, committing on nil and rolling back
// otherwise.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.inTxWithin(ctx, s.txTimeout, fn)
}

// inTxWithin is inTx with its own bound (0: none but ctx's).
func (s *Store) inTxWithin(ctx context.Context, d time.Duration, fn func(pgx.Tx) error) error {
	ctx, cancel := bound(ctx, d)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// IsUnavailable reports whether err means the database could not be reached, as opposed to a
// statement that failed; the syncer uses it to tell "the cycle cannot run" from a user's failure.
func IsUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01..03: admin shutdown, crash shutdown, cannot connect now.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	return pgconn.SafeToRetry(err)
}
