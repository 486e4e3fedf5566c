package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ResolvePoolMode is resolvePoolMode, for the test of which port picks which mode.
var ResolvePoolMode = resolvePoolMode

// Charge applies a batch in its own transaction: the ledger tests drive chargeTx directly,
// without the lease and plan that Apply wraps around it in production.
func (s *Store) Charge(ctx context.Context, charges []Charge, shadow bool) (ChargeResult, error) {
	var res ChargeResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = chargeTx(ctx, tx, charges, shadow)
		return err
	})
	return res, err
}

// PoolMode is the mode Open configured the pool for, read back from the pool itself: only
// transaction mode runs every statement over the simple protocol.
func (s *Store) PoolMode() string {
	if s.pool.Config().ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		return "transaction"
	}
	return "session"
}

// Pool is the store's own pool, for the one test that inspects the connections the store
// itself used (no prepared statements in transaction mode); every other test opens its own
// pool with pgtest.Pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool.Pool }

// HoldFence opens a transaction holding l's fence, as a chunk or the final apply does while it
// writes, and returns the function that ends it.
func (s *Store) HoldFence(ctx context.Context, l *Lease) (end func(), err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := fence(ctx, tx, l); err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	return func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }, nil
}
