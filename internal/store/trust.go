package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrProfileGone means the user's profiles row was deleted while the user was being synced:
// nothing of the sync is written, no mirror row and no ledger row.
var ErrProfileGone = errors.New("the user's profile was deleted during its sync: nothing written")

// Conflict is a row an upstream listing put under one user that the database holds for another.
type Conflict struct {
	Table, ID, Owner string
}

// OwnershipError means a user's listing carried ids of rows another user owns. Rows are never
// reassigned, and the sync that carried them writes nothing, so nothing is charged for rows
// that could not be mirrored.
type OwnershipError struct {
	User      string
	Conflicts []Conflict // at most maxConflicts, ordered by table and id
}

const maxConflicts = 10

func (e *OwnershipError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the upstream listed for user %s %d row(s) another user owns:", e.User, len(e.Conflicts))
	for i, c := range e.Conflicts {
		if i == 3 {
			fmt.Fprintf(&b, " and %d more", len(e.Conflicts)-3)
			break
		}
		fmt.Fprintf(&b, " %s %s of user %s;", c.Table, c.ID, c.Owner)
	}
	return strings.TrimSuffix(b.String(), ";") + " (not reassigned, nothing written)"
}

// checkProfile locks the user's profile against deletion for the rest of the transaction, or
// reports that it is gone.
func checkProfile(ctx context.Context, tx pgx.Tx, user string) error {
	var one int
	err := tx.QueryRow(ctx, `select 1 from profiles where user_id = $1 for key share`, user).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrProfileGone
	}
	if err != nil {
		return fmt.Errorf("check profile: %w", err)
	}
	return nil
}

// checkOwnership runs after the upserts, which skip rows of another user: any id of this sync
// still owned by someone else in the worker's own records (usage_sync) is a conflict. The mirror
// is never asked: a dashboard row naming another user's id is the dashboard's, and is
// rewritten. Checking after rather than before also catches a record another user's sync
// inserted concurrently (the upsert waited for it, then skipped it).
func checkOwnership(ctx context.Context, tx pgx.Tx, user string, u *Plan) error {
	keys := make([]string, 0, len(u.Keys)+len(u.Usage))
	for _, k := range u.Keys {
		keys = append(keys, k.ID)
	}
	for _, r := range u.Usage {
		keys = append(keys, r.KeyID)
	}
	tasks := make([]string, 0, len(u.Tasks))
	for _, t := range u.Tasks {
		tasks = append(tasks, t.ID)
	}
	if len(keys) == 0 && len(tasks) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `
		select 'api_keys', key_id, user_id::text from usage_sync.keys where key_id = any($2::text[]) and user_id <> $1
		union
		select 'api_usage', key_id, user_id::text from usage_sync.key_days
		where key_id = any($2::text[]) and user_id <> $1
		union
		select 'tasks', task_id, user_id::text from usage_sync.tasks where task_id = any($3::text[]) and user_id <> $1
		order by 1, 2, 3
		limit $4`, user, keys, tasks, maxConflicts)
	if err != nil {
		return fmt.Errorf("check row ownership: %w", err)
	}
	conflicts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Conflict, error) {
		var c Conflict
		return c, r.Scan(&c.Table, &c.ID, &c.Owner)
	})
	if err != nil {
		return fmt.Errorf("check row ownership: %w", err)
	}
	if len(conflicts) > 0 {
		return &OwnershipError{User: user, Conflicts: conflicts}
	}
	return nil
}
