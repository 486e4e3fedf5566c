package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// KeyRow mirrors one key of the upstream's lifetime listing.
type KeyRow struct {
	ID, Name, Purpose, Integration string
	IsActive                       bool
	CreatedAt, LastUsedAt          *time.Time
	TotalRequests                  *int64 // nil: the upstream did not say; the stored value stays
}

// UsageRow is one key's requests in one UTC day.
type UsageRow struct {
	KeyID, Purpose string
	Day            time.Time // UTC midnight
	Count          int64
}

// KeyDay names a (key, day) row.
type KeyDay struct {
	KeyID string
	Day   time.Time
}

// PurposeRow is a user's requests for one purpose in one UTC day, as the per-purpose totals say.
type PurposeRow struct {
	Purpose string
	Day     time.Time
	Count   int64
}

// TaskRow is a task as the dashboard's history shows it.
type TaskRow struct {
	ID, Status, Source, WebhookURL                      string
	Emails, Valid, Invalid, Catchall, Unknown, Billable int64
	Progress                                            *float64
	CreatedAt                                           time.Time
	UpdatedAt, StartedAt, FinishedAt                    *time.Time
	Finished                                            bool // FinishedAt nil + Finished: first seen finished now
}

// Plan is everything one sync of one user writes, applied atomically by Apply: the output of
// the syncer's pure buildPlan.
type Plan struct {
	RunID        string
	Keys         []KeyRow // the complete lifetime listing: listed keys absent from it are revoked
	Usage        []UsageRow
	ZeroUsage    []KeyDay // rows known to be 0 now (key unused since before the day)
	PurposeUsage []PurposeRow
	Tasks        []TaskRow
	Charges      []Charge
	// Unlisted are the (purpose, day) observations of settled days, charged after Charges in
	// the same transaction so that what they count as charged includes this plan's key charges.
	Unlisted       []Charge
	Shadow         bool
	SettledThrough *time.Time
	BlockedKeys    map[string]string // key id → why its charges are halted; non-empty → degraded

	// ReadsFingerprint digests this sync's lifetime listing when nothing moved while it read;
	// "" when something did (the next sync then re-reads the windows).
	ReadsFingerprint string
	// RevisionWindow is how long finished tasks stay behind the task watermark, measured on the
	// lease's clock when the plan is applied.
	RevisionWindow time.Duration
	// Swept says this pass re-read finished tasks for revisions: revision_swept_at moves to now.
	Swept bool
	// ChargeFrom is the pass's charge start. In live mode a finished task created since then
	// that has no task row yet (it finished while the worker was in shadow mode) stays behind
	// the revision sweep's watermark until a live pass has charged it.
	ChargeFrom time.Time
}

// TaskChunk is a slice of a user's task pass, applied before the pass ends so memory does not
// grow with the user's number of tasks: its task rows and their charges, nothing else.
type TaskChunk struct {
	Tasks   []TaskRow
	Charges []Charge
	Shadow  bool
}

// ChunkApplied counts what ApplyChunk changed.
type ChunkApplied struct {
	TasksWritten int64
	Charge       ChargeResult
}

// ApplyChunk writes one chunk of a user's task pass in one transaction, fenced by the lease.
// A chunk never moves the task watermark (only Apply does, once the pass is complete), so a
// crash between chunks leaves rows the next pass reads again and finds done.
func (s *Store) ApplyChunk(ctx context.Context, l *Lease, c TaskChunk) (ChunkApplied, error) {
	var out ChunkApplied
	err := s.inLeaseTx(ctx, l, func(tx pgx.Tx) error {
		out = ChunkApplied{}
		var err error
		if out.TasksWritten, err = upsertTasks(ctx, tx, l, c.Tasks, !c.Shadow); err != nil {
			return err
		}
		// As in Apply: a chunk whose tasks another user owns writes nothing and charges nothing.
		if err := checkOwnership(ctx, tx, l.UserID, &Plan{Tasks: c.Tasks}); err != nil {
			return err
		}
		out.Charge, err = chargeTx(ctx, tx, c.Charges, c.Shadow)
		return err
	})
	if err != nil {
		return ChunkApplied{}, fmt.Errorf("apply task chunk of %s: %w", l.UserID, err)
	}
	return out, nil
}

// inLeaseTx runs fn in a transaction that first checks the lease is still this worker's and the
// user still in profiles: Apply and ApplyChunk write nothing otherwise.
func (s *Store) inLeaseTx(ctx context.Context, l *Lease, fn func(pgx.Tx) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, l); err != nil {
			return err
		}
		if err := checkProfile(ctx, tx, l.UserID); err != nil {
			return err
		}
		return fn(tx)
	})
}

// fence checks, inside tx, that the lease is still this worker's, and keeps it so until tx ends.
// FOR KEY SHARE conflicts with a claim's FOR UPDATE (a claim skips the row) but not with the
// renewal's UPDATE of non-key columns, so renewing never waits on the worker's own writes.
func fence(ctx context.Context, tx pgx.Tx, l *Lease) error {
	var token int64
	err := tx.QueryRow(ctx, `select lease_token from sync_state where user_id = $1 and lease_token = $2 for key share`,
		l.UserID, l.Token).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("check lease: %w", err)
	}
	return nil
}

// Applied counts what Apply changed; rows left as they were are not counted.
type Applied struct {
	KeysWritten, KeysRevoked, UsageWritten, PurposeWritten, TasksWritten int64
	Charge                                                               ChargeResult
	Status                                                               string
}

// Apply writes one user's sync in one transaction, after checking the lease is still this
// worker's: either all of it lands with the new sync_state, or none of it does.
func (s *Store) Apply(ctx context.Context, l *Lease, u *Plan) (Applied, error) {
	var out Applied
	err := s.inLeaseTx(ctx, l, func(tx pgx.Tx) error {
		out = Applied{}
		var err error
		if out.KeysWritten, out.KeysRevoked, err = upsertKeys(ctx, tx, l.UserID, u.Keys); err != nil {
			return err
		}
		if out.UsageWritten, err = upsertUsage(ctx, tx, l.UserID, u.Usage, u.ZeroUsage); err != nil {
			return err
		}
		if out.PurposeWritten, err = upsertPurposeUsage(ctx, tx, l.UserID, u.PurposeUsage); err != nil {
			return err
		}
		if out.TasksWritten, err = upsertTasks(ctx, tx, l, u.Tasks, !u.Shadow); err != nil {
			return err
		}
		if err := checkOwnership(ctx, tx, l.UserID, u); err != nil {
			return err
		}
		if out.Charge, err = chargeTx(ctx, tx, u.Charges, u.Shadow); err != nil {
			return err
		}
		unlisted, err := chargeTx(ctx, tx, u.Unlisted, u.Shadow)
		if err != nil {
			return err
		}
		out.Charge.add(unlisted)
		out.Status, err = recordSuccess(ctx, tx, l, u, unlistedInconsistent(unlisted))
		return err
	})
	if err != nil {
		return Applied{}, fmt.Errorf("apply sync of %s: %w", l.UserID, err)
	}
	return out, nil
}

// recordSuccess ends a sync in sync_state: its status ("ok", or "degraded" while keys are
// blocked), the settled mark, the task watermarks, and the lease released. The task watermarks
// are derived here, from rows a complete pass has just brought up to date, and stored: the next
// pass starts from them, never from rows a chunk of a pass that crashed may have written. A paused
// user (only an operator's resync takes one) stays paused.
func recordSuccess(ctx context.Context, tx pgx.Tx, l *Lease, u *Plan, more map[string]string) (status string, err error) {
	status, lastError := "ok", ""
	blocked := maps.Clone(u.BlockedKeys)
	if blocked == nil {
		blocked = map[string]string{}
	}
	maps.Copy(blocked, more)
	if len(blocked) > 0 {
		status = "degraded"
		lastError = fmt.Sprintf("charging halted for %d key(s): %s", len(blocked), firstReason(blocked))
	}
	bj, err := json.Marshal(blocked)
	if err != nil {
		return "", err
	}
	// A live sync's settled mark is also the live mark (Lease.LiveSettledThrough), which only a
	// live sync moves; sync_state's mark is the furthest either mode has settled.
	_, err = tx.Exec(ctx, `
		with g as (
			update usage_sync.go_live g
			set settled_through = greatest(g.settled_through, (@settled::timestamptz at time zone 'UTC')::date)
			where g.user_id = @user and not @shadow::bool
			  -- only when the mark moves: an unchanged row is not rewritten
			  and (@settled::timestamptz at time zone 'UTC')::date > coalesce(g.settled_through, '-infinity'::date)
			  and exists (select 1 from sync_state s where s.user_id = @user and s.lease_token = @token)
		),
		w as (
			select coalesce(min(created_at) filter (where status in ('pending', 'processing')
			                                          or finished_at > `+clockNow+` - @window::interval
			                                          or (not @shadow::bool and finished_at is not null
			                                              and billable_count > 0 and created_at >= @charge_from::timestamptz
			                                              and not charged_live)),
			                max(created_at)) as wm,
			       coalesce(min(created_at) filter (where status in ('pending', 'processing')),
			                max(created_at)) as wm_open
			from usage_sync.tasks t where user_id = @user
		)
		update sync_state set status = case when sync_state.status = 'paused' then sync_state.status else @status end, last_attempt_at = `+clockNow+`, last_success_at = `+clockNow+`,
		       last_error = nullif(@error, ''), last_error_kind = case when @error = '' then null else 'degraded' end,
		       consecutive_failures = 0, next_attempt_at = `+clockNow+`,
		       settled_through = greatest(settled_through, (@settled::timestamptz at time zone 'UTC')::date),
		       blocked_keys = @blocked, last_run_id = @run, lease_owner = null, lease_expires_at = null,
		       updated_at = now(), reads_fingerprint = nullif(@fingerprint, ''), task_watermark = w.wm,
		       task_watermark_open = w.wm_open,
		       revision_swept_at = case when @swept then `+clockNow+` else revision_swept_at end
		from w
		where user_id = @user and lease_token = @token`,
		pgx.NamedArgs{"user": l.UserID, "token": l.Token, "status": status, "error": lastError,
			"settled": u.SettledThrough, "blocked": string(bj), "run": u.RunID, "now": l.clock.NowOrNil(),
			"fingerprint": u.ReadsFingerprint, "window": u.RevisionWindow.String(), "swept": u.Swept,
			"shadow": u.Shadow, "charge_from": chargeFromArg(u.ChargeFrom)})
	if err != nil {
		return "", fmt.Errorf("record success: %w", err)
	}
	return status, nil
}

// chargeFromArg is a plan's charge start as a statement argument: null when the plan has none,
// which keeps no finished task behind the watermark.
func chargeFromArg(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func firstReason(m map[string]string) string {
	best := ""
	for k := range m {
		if best == "" || k < best {
			best = k
		}
	}
	return "key " + best + ": " + m[best]
}

// The worker's bookkeeping (usage_sync.keys, key_days, purpose_days, tasks) is what every
// decision reads; public.api_keys, api_usage and tasks are its mirror for the dashboard
// (docs/design.md, "The mirror"). Each upsert below writes the worker's record first, skipping
// rows whose data did not change there, and then rewrites the mirror rows of exactly the records
// it changed, whole, owner included: a mirror row someone else inserted or altered is rewritten
// when its data next changes, and never consulted before.

// mirrorKeysSQL writes the mirror rows of the usage_sync.keys records in w.
const mirrorKeysSQL = `
		insert into api_keys as m (id, user_id, name, purpose, integration, is_active, created_at, last_used_at,
		                           total_requests, revoked_at, synced_at)
		select key_id, user_id, name, purpose, integration, is_active, created_at, last_used_at, total_requests,
		       revoked_at, now() from w
		on conflict (id) do update set
			user_id = excluded.user_id, name = excluded.name, purpose = excluded.purpose,
			integration = excluded.integration, is_active = excluded.is_active, created_at = excluded.created_at,
			last_used_at = excluded.last_used_at, total_requests = excluded.total_requests,
			revoked_at = excluded.revoked_at, synced_at = now()`

const keyColumns = `key_id, user_id, name, purpose, integration, is_active, created_at, last_used_at, total_requests, revoked_at`

func upsertKeys(ctx context.Context, tx pgx.Tx, user string, keys []KeyRow) (written, revoked int64, err error) {
	keys = dedupe(keys, func(k KeyRow) string { return k.ID })
	n := len(keys)
	ids, names, purposes, integrations := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	active := make([]bool, n)
	created, used := make([]*time.Time, n), make([]*time.Time, n)
	totals := make([]*int64, n)
	for i, k := range keys {
		ids[i], names[i], purposes[i], integrations[i] = k.ID, k.Name, k.Purpose, k.Integration
		active[i], created[i], used[i], totals[i] = k.IsActive, k.CreatedAt, k.LastUsedAt, k.TotalRequests
	}
	tag, err := tx.Exec(ctx, `
		with w as (
			insert into usage_sync.keys as a (`+keyColumns+`)
			select id, $1, nullif(name, ''), nullif(purpose, ''), nullif(integration, ''), active, created, used, total, null
			from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::timestamptz[], $8::timestamptz[], $9::bigint[])
			     as k(id, name, purpose, integration, active, created, used, total)
			on conflict (key_id) do update set
				name = excluded.name, purpose = excluded.purpose, integration = excluded.integration,
				is_active = excluded.is_active, created_at = coalesce(excluded.created_at, a.created_at),
				last_used_at = coalesce(excluded.last_used_at, a.last_used_at),
				total_requests = coalesce(excluded.total_requests, a.total_requests), revoked_at = null
			where a.user_id = excluded.user_id
			  and (a.name, a.purpose, a.integration, a.is_active, a.created_at, a.last_used_at, a.total_requests, a.revoked_at)
			      is distinct from
			      (excluded.name, excluded.purpose, excluded.integration, excluded.is_active,
			       coalesce(excluded.created_at, a.created_at), coalesce(excluded.last_used_at, a.last_used_at),
			       coalesce(excluded.total_requests, a.total_requests), null::timestamptz)
			returning `+keyColumns+`
		)`+mirrorKeysSQL,
		user, ids, names, purposes, integrations, active, created, used, totals)
	if err != nil {
		return 0, 0, fmt.Errorf("upsert api keys: %w", err)
	}
	written = tag.RowsAffected()
	tag, err = tx.Exec(ctx, `
		with w as (
			update usage_sync.keys set revoked_at = now(), is_active = false
			where user_id = $1 and revoked_at is null and key_id <> all($2::text[])
			returning `+keyColumns+`
		)`+mirrorKeysSQL, user, ids)
	if err != nil {
		return 0, 0, fmt.Errorf("revoke vanished api keys: %w", err)
	}
	return written, tag.RowsAffected(), nil
}

// mirrorKeyDaysSQL writes the mirror rows of the usage_sync.key_days records in w.
const mirrorKeyDaysSQL = `
		insert into api_usage as m (user_id, api_key_id, purpose, count, period_start, period_end, origin, synced_at)
		select user_id, key_id, nullif(purpose, ''), count, day, day + interval '1 day', 'usage-sync', now() from w
		on conflict (api_key_id, period_start) where origin = 'usage-sync' and api_key_id is not null
		do update set user_id = excluded.user_id, purpose = excluded.purpose, count = excluded.count,
		              period_end = excluded.period_end, path = null, synced_at = now()`

func upsertUsage(ctx context.Context, tx pgx.Tx, user string, rows []UsageRow, zero []KeyDay) (int64, error) {
	if len(rows) == 0 && len(zero) == 0 {
		return 0, nil
	}
	rows = dedupe(rows, func(r UsageRow) string { return r.KeyID + "|" + r.Day.UTC().Format(time.DateOnly) })
	n := len(rows)
	keys, purposes := make([]string, n), make([]string, n)
	days := make([]time.Time, n)
	counts := make([]int64, n)
	for i, r := range rows {
		keys[i], purposes[i], days[i], counts[i] = r.KeyID, r.Purpose, r.Day.UTC(), r.Count
	}
	tag, err := tx.Exec(ctx, `
		with w as (
			insert into usage_sync.key_days as u (key_id, day, user_id, purpose, count)
			select k, d, $1, p, c
			from unnest($2::text[], $3::text[], $4::bigint[], $5::timestamptz[]) as r(k, p, c, d)
			on conflict (key_id, day) do update set count = excluded.count, purpose = excluded.purpose
			where u.user_id = excluded.user_id
			  and (u.count, u.purpose) is distinct from (excluded.count, excluded.purpose)
			returning key_id, day, user_id, purpose, count
		)`+mirrorKeyDaysSQL,
		user, keys, purposes, counts, days)
	if err != nil {
		return 0, fmt.Errorf("upsert api usage: %w", err)
	}
	written := tag.RowsAffected()
	if len(zero) == 0 {
		return written, nil
	}
	zk, zd := make([]string, len(zero)), make([]time.Time, len(zero))
	for i, z := range zero {
		zk[i], zd[i] = z.KeyID, z.Day.UTC()
	}
	tag, err = tx.Exec(ctx, `
		with w as (
			update usage_sync.key_days u set count = 0
			from unnest($2::text[], $3::timestamptz[]) as z(k, d)
			where u.user_id = $1 and u.key_id = z.k and u.day = z.d and u.count <> 0
			returning u.key_id, u.day, u.user_id, u.purpose, u.count
		)`+mirrorKeyDaysSQL,
		user, zk, zd)
	if err != nil {
		return 0, fmt.Errorf("zero api usage of unused keys: %w", err)
	}
	return written + tag.RowsAffected(), nil
}

func upsertPurposeUsage(ctx context.Context, tx pgx.Tx, user string, rows []PurposeRow) (int64, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	rows = dedupe(rows, func(r PurposeRow) string { return r.Purpose + "|" + r.Day.UTC().Format(time.DateOnly) })
	n := len(rows)
	purposes, days, counts := make([]string, n), make([]time.Time, n), make([]int64, n)
	for i, r := range rows {
		purposes[i], days[i], counts[i] = r.Purpose, r.Day.UTC(), r.Count
	}
	tag, err := tx.Exec(ctx, `
		with w as (
			insert into usage_sync.purpose_days as u (user_id, purpose, day, count)
			select $1, p, d, c from unnest($2::text[], $3::bigint[], $4::timestamptz[]) as r(p, c, d)
			on conflict (user_id, purpose, day) do update set count = excluded.count
			where u.count is distinct from excluded.count
			returning user_id, purpose, day, count
		)
		insert into api_usage as m (user_id, api_key_id, purpose, count, period_start, period_end, origin, synced_at)
		select user_id, null, purpose, count, day, day + interval '1 day', 'usage-sync', now() from w
		on conflict (user_id, purpose, period_start) where origin = 'usage-sync' and api_key_id is null
		do update set count = excluded.count, period_end = excluded.period_end, path = null, synced_at = now()`,
		user, purposes, counts, days)
	if err != nil {
		return 0, fmt.Errorf("upsert per-purpose usage: %w", err)
	}
	return tag.RowsAffected(), nil
}

// taskMirrored are the task columns the worker's record and the mirror share besides the id and
// the owner; taskColumns is all of them.
var (
	taskMirrored = []string{"status", "email_count", "valid_count", "invalid_count", "catchall_count", "unknown_count",
		"billable_count", "progress", "source", "webhook_url", "created_at", "updated_at", "started_at", "finished_at"}
	taskColumns = "task_id, user_id, " + strings.Join(taskMirrored, ", ")
)

// assignExcluded is an ON CONFLICT DO UPDATE's "c = excluded.c" list for cols.
func assignExcluded(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c + " = excluded." + c
	}
	return strings.Join(out, ", ")
}

// qualified is cols, each prefixed ("t." or "excluded."), for a row comparison.
func qualified(prefix string, cols []string) string {
	return prefix + strings.Join(cols, ", "+prefix)
}

// upsertTasksSQL writes the record's changed tasks, then their mirror rows: $1 the user, $2–$17
// the task columns, $18 the lease's clock, $19 whether the pass charges (live): a row a live pass
// writes is charged in the same transaction (charged_live), one a shadow pass writes is not. Built once: the column lists are shared with the
// mirror's, and the statement text must not be rebuilt per call.
var upsertTasksSQL = `
		with input as (
			select * from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[],
			                     $9::bigint[], $10::bigint[], $11::bigint[], $12::float8[], $13::timestamptz[],
			                     $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::bool[])
			  as i(id, status, source, hook, emails, valid, invalid, catchall, unknown, billable, progress, created,
			       updated, started, finished_at, finished)
		),
		w as (
			insert into usage_sync.tasks as t (` + taskColumns + `, charged_live)
			select i.id, $1, i.status, i.emails, i.valid, i.invalid, i.catchall, i.unknown, i.billable, i.progress,
			       nullif(i.source, ''), nullif(i.hook, ''), i.created, coalesce(i.updated, i.created), i.started,
			       case when i.finished then coalesce(i.finished_at, old.finished_at, $18::timestamptz, now()) end,
			       $19::bool
			from input i left join usage_sync.tasks old on old.task_id = i.id
			on conflict (task_id) do update set ` + assignExcluded(taskMirrored) + `,
			       charged_live = excluded.charged_live
			where t.user_id = excluded.user_id
			  and ((` + qualified("t.", taskMirrored) + `) is distinct from (` + qualified("excluded.", taskMirrored) + `)
			       or (excluded.charged_live and not t.charged_live))
			returning ` + taskColumns + `
		)
		insert into tasks as m (` + taskColumns + `, synced_at)
		select ` + taskColumns + `, now() from w
		on conflict (task_id) do update set user_id = excluded.user_id, ` + assignExcluded(taskMirrored) + `, synced_at = now()`

// upsertTasks writes a task only when one of its mirrored columns changed in the worker's record.
// finished_at is the upstream's when given, else kept from an earlier sync, else now on the
// lease's clock (first seen finished): the revision window is measured from it.
func upsertTasks(ctx context.Context, tx pgx.Tx, l *Lease, tasks []TaskRow, live bool) (int64, error) {
	if len(tasks) == 0 {
		return 0, nil
	}
	tasks = dedupe(tasks, func(t TaskRow) string { return t.ID })
	n := len(tasks)
	ids, statuses, sources, hooks := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	emails, valid, invalid, catchall, unknown, billable := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	progress := make([]*float64, n)
	created := make([]time.Time, n)
	updated, started, finishedAt := make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
	finished := make([]bool, n)
	for i, t := range tasks {
		ids[i], statuses[i], sources[i], hooks[i] = t.ID, t.Status, t.Source, t.WebhookURL
		emails[i], valid[i], invalid[i], catchall[i], unknown[i], billable[i] = t.Emails, t.Valid, t.Invalid, t.Catchall, t.Unknown, t.Billable
		progress[i], created[i], updated[i], started[i], finishedAt[i], finished[i] = t.Progress, t.CreatedAt, t.UpdatedAt, t.StartedAt, t.FinishedAt, t.Finished
	}
	tag, err := tx.Exec(ctx, upsertTasksSQL,
		l.UserID, ids, statuses, sources, hooks, emails, valid, invalid, catchall, unknown, billable, progress, created,
		updated, started, finishedAt, finished, l.clock.NowOrNil(), live)
	if err != nil {
		return 0, fmt.Errorf("upsert tasks: %w", err)
	}
	return tag.RowsAffected(), nil
}

// dedupe keeps the last of each key: ON CONFLICT DO UPDATE refuses one statement that touches
// the same row twice, and the upstream's listings may repeat an entry.
func dedupe[T any](in []T, key func(T) string) []T {
	idx := make(map[string]int, len(in))
	out := make([]T, 0, len(in))
	for _, v := range in {
		k := key(v)
		if i, ok := idx[k]; ok {
			out[i] = v
			continue
		}
		idx[k] = len(out)
		out = append(out, v)
	}
	return out
}
