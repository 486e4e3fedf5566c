package syncer

import "context"

// Hooks are injection points for fault tests: a test makes a sync stop where a crash could.
// Only tests install them (export_test.go); a production Syncer's hooks are nil and cost a nil check.
type Hooks struct {
	// BeforeApply runs after every upstream read of a user and before its write transaction; an
	// error aborts the user's sync as a crash there would.
	BeforeApply func(ctx context.Context, userID string) error
	// AfterChunk runs after the chunk-th task chunk of a user's pass committed; an error aborts
	// the sync as a crash between two chunks would.
	AfterChunk func(ctx context.Context, userID string, chunk int) error
	// AfterFinish runs once a user's final transaction has ended (whatever its outcome) and its
	// lease is no longer renewed: the writer is done with the user.
	AfterFinish func(userID string)
	// AfterClaim runs once a reader has claimed a user and holds its lease, before its reads.
	AfterClaim func(userID string)
	// AfterRenew runs after each successful renewal of a user's lease.
	AfterRenew func(userID string)
}
