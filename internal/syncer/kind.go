package syncer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
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

// userText is a failed sync as sync_state.last_error shows it, which the user reads on the
// dashboard: what went wrong with their own sync, never another user, a database host or a
// role. An upstream error (about this user's own calls), a paging bound or a gone profile is
// shown as is; an ownership conflict without the other user or the ids; anything else (the
// database, the worker) only by its kind, the details left to the operator's log under the run.
func userText(err error, kind, runID string) string {
	var ue *upstream.Error
	var oe *store.OwnershipError
	var pe *PagingError
	switch {
	case errors.As(err, &oe):
		tables := map[string]bool{}
		for _, c := range oe.Conflicts {
			tables[c.Table] = true
		}
		names := make([]string, 0, len(tables))
		for t := range tables {
			names = append(names, t)
		}
		sort.Strings(names)
		return fmt.Sprintf("the upstream listed %d row(s) of %s under this user that another user holds: not reassigned, nothing written (the operator's log, run %s, has the details)",
			len(oe.Conflicts), strings.Join(names, ", "), runID)
	case errors.As(err, &ue), errors.As(err, &pe), errors.Is(err, store.ErrProfileGone):
		return errorText(err)
	case kind == "timeout":
		return fmt.Sprintf("the sync ran past SYNC_USER_TIMEOUT or waited too long on the database (the operator's log, run %s, has the details)", runID)
	}
	return fmt.Sprintf("internal error in the worker or its database (the operator's log, run %s, has the details)", runID)
}

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
	var pe *PagingError
	switch {
	case errors.As(err, &pe):
		// A task pass that could not end well: which bound stopped it.
		return pe.Kind, 0
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
