package store

import "context"

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
