package syncer

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/safetext"
	"github.com/usage-sync/usage-sync/internal/store"
	"github.com/usage-sync/usage-sync/internal/upstream"
)

// maxErrorText bounds a failure's text in sync_state.last_error, the logs and the --once summary.
const maxErrorText = 1000

// errorText is err as sync_state, the logs and a terminal may show it: an upstream error can
// carry what the server said, and that must never keep the failure from being recorded (NUL)
// nor reach a terminal raw (escape sequences).
func errorText(err error) string { return safetext.Clean(err.Error(), maxErrorText) }

// cleanError is a failed sync's error with its text made safe (errorText) and its cause kept.
type cleanError struct {
	text string
	err  error
}

func (e *cleanError) Error() string { return e.text }
func (e *cleanError) Unwrap() error { return e.err }

// classify names a failed sync's kind, as sync_state.last_error_kind shows it, and the
// upstream's Retry-After if any.
func classify(err error) (kind string, retryAfter time.Duration) {
	var ue *upstream.Error
	var oe *store.OwnershipError
	switch {
	case errors.Is(err, errUserTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout", 0
	case errors.As(err, &ue):
		return ue.Kind.String(), ue.RetryAfter
	case errors.As(err, &oe):
		// The upstream's listings disagree with who owns what: not ours to resolve by retrying.
		return "conflict", 0
	case errors.Is(err, store.ErrProfileGone):
		return "permanent", 0
	}
	return "internal", 0
}

// failureFields are the log fields that let an operator act on a failure: for an ownership
// conflict, both users and the ids.
func failureFields(err error) []zap.Field {
	var oe *store.OwnershipError
	if !errors.As(err, &oe) || len(oe.Conflicts) == 0 {
		return nil
	}
	c := oe.Conflicts[0]
	ids := make([]string, 0, len(oe.Conflicts))
	for _, c := range oe.Conflicts {
		ids = append(ids, c.Table+":"+c.ID)
	}
	return []zap.Field{zap.String("conflict_id", c.ID), zap.String("conflict_table", c.Table),
		zap.String("owner_user_id", c.Owner), zap.Strings("conflicts", ids)}
}
