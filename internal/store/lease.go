package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// ErrLeaseLost means another worker claimed the user since this one did (its lease expired):
// whatever this worker fetched must not be written.
var ErrLeaseLost = errors.New("lease lost: another worker claimed this user")

// Lease is a worker's claim on one user for one sync, with what the sync needs to know of the
// user's state at claim time.
type Lease struct {
	UserID     string
	Owner      string
	Token      int64 // fencing token: every write checks it is still the user's
	EnrolledAt time.Time
	// LiveAt is when the user's charging starts with CHARGE_FROM empty (usage_sync.go_live): the
	// later of its enrolment and the first take by a live worker. nil until a live worker took it.
	LiveAt         *time.Time
	SettledThrough *time.Time // every UTC day before this is settled; nil before the first
	// LiveSettledThrough is how far a worker in live mode has settled the user's days
	// (usage_sync.go_live.settled_through): days settled while the worker was in shadow mode
	// lie between it and SettledThrough, and a live sync reads them again.
	LiveSettledThrough  *time.Time
	ConsecutiveFailures int
	BlockedKeys         map[string]string
	// clock is the claim's (ClaimRequest.Clock): the lease's renewals, the attempt, the backoff
	// and the writes the sync fences with the lease are measured on it.
	clock clock.Clock
}

// clockNow is "now" in every statement that decides time, @now being the caller's
// Clock.NowOrNil(): a test's time, or null in production, and then the database's now().
const clockNow = `coalesce(@now::timestamptz, now())`

// ClaimRequest says which users a worker may claim.
type ClaimRequest struct {
	Owner string
	RunID string // recorded on the user, for the logs
	// Cycle is the shared cycle the run takes users for (JoinCycle): a user already taken in it
	// is not taken again, by this worker or any other. 0 takes users whatever cycle took them
	// and leaves their cycle as it was (a --user run, which claims its one user once).
	Cycle  int64
	TTL    time.Duration
	All    bool   // include users backing off after failures
	UserID string // only this user, ignoring its backoff
	// Operator marks an operator's command for UserID (usage-sync resync): it takes the user
	// even while it is paused (usage-sync pause), whose status it then leaves as it was.
	Operator bool
	// Clock is what the lease, its attempt and backoff are measured on; the lease keeps it.
	Clock clock.Clock
	// Live says the worker charges (CHARGE_ENABLED=true): its first take of a user records the
	// user's go-live (Lease.LiveAt).
	Live bool
}

// HasUser reports whether user is in profiles.
func (s *Store) HasUser(ctx context.Context, user string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `select exists (select 1 from profiles where user_id = $1)`, user).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up user %s: %w", user, err)
	}
	return ok, nil
}

// Enrol adds every profile that has no sync_state yet, as pending and due now on clk, which is
// also the enrolment, the user's default CHARGE_FROM. With only set (a run for one user:
// --user, a webhook, a request) it enrols at most that user: a single-user run never touches
// the rest of the population.
func (s *Store) Enrol(ctx context.Context, clk clock.Clock, only string) (int64, error) {
	var user *string
	if only != "" {
		user = &only
	}
	tag, err := s.pool.Exec(ctx, `
		insert into sync_state (user_id, enrolled_at, next_attempt_at)
		select p.user_id, `+clockNow+`, `+clockNow+` from profiles p
		where (@user::uuid is null or p.user_id = @user::uuid)
		  and not exists (select 1 from sync_state s where s.user_id = p.user_id)
		on conflict (user_id) do nothing`, pgx.NamedArgs{"now": clk.NowOrNil(), "user": user})
	if err != nil {
		return 0, fmt.Errorf("enrol users: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Cycle is one pass over the due users, shared by every live worker in it.
type Cycle struct {
	ID        int64
	StartedAt time.Time
	Joined    bool // another live worker is in it; this one joined
}

// CycleMember is a run's place in its cycle (usage_sync.cycle_member): while it is renewed
// (RenewMember) and not ended (EndMember), other runs may join the cycle.
type CycleMember struct {
	RunID  string
	Worker string
	TTL    time.Duration // live this long after each renewal; the run's SYNC_LEASE_TTL
	Clock  clock.Clock
}

// liveMember: some run other than @run is in cycle @cycle, not ended, its renewal not expired.
const liveMember = `exists (select 1 from usage_sync.cycle_member m
	where m.cycle_id = @cycle and m.run_id <> @run and m.ended_at is null and m.expires_at >= ` + clockNow + `)`

// JoinCycle joins the current cycle while another live worker is in it and it is still open,
// so that a worker starting beside others (replicas on one schedule, a CronJob --once beside
// the daemon) takes only the users nobody took yet; otherwise it starts the next cycle, so
// consecutive runs each sync everyone due, and a run after an interrupted one (SIGTERM,
// SIGKILL, a crash) attempts every user again rather than skipping what the dead run took.
// Either way the run becomes a member of the cycle in the same transaction, so a worker
// starting a moment later sees it live before it has claimed anything.
//
// A cycle with a live member is open while a plain run could still claim a user in it, and,
// for joinWindow after it started, while users it took are still in flight: a replica starting
// a little late, when the others have claimed everyone, joins rather than syncing everyone
// again. After the window, users in flight no longer hold the cycle: a sync that outlasts the
// schedule must not leave the other replicas idle at the next tick. The cycle row is locked
// while deciding, so two workers starting together agree on one cycle.
func (s *Store) JoinCycle(ctx context.Context, m CycleMember, joinWindow time.Duration) (Cycle, error) {
	var c Cycle
	// One reading for the whole decision: the cycle's start and the member's join agree.
	now := m.Clock.NowOrNil()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var started *time.Time
		if err := tx.QueryRow(ctx, `select id, started_at from usage_sync.cycle where singleton for update`).
			Scan(&c.ID, &started); err != nil {
			return err
		}
		if started != nil {
			open := pgx.NamedArgs{"now": now, "cycle": c.ID, "run": m.RunID, "user": nil, "all": false, "operator": false, "started": started, "window": joinWindow.String()}
			if err := tx.QueryRow(ctx, `
				select `+liveMember+`
				   and (exists (select 1 from sync_state s where `+dueFilter+`)
				        or (@started::timestamptz > `+clockNow+` - @window::interval
				            and exists (select 1 from sync_state s
				                        where s.cycle_id = @cycle and s.lease_owner is not null
				                          and s.lease_expires_at >= `+clockNow+`)))`, open).Scan(&c.Joined); err != nil {
				return err
			}
		}
		if c.Joined {
			c.StartedAt = *started
		} else {
			if err := tx.QueryRow(ctx, `
				update usage_sync.cycle set id = id + 1, started_at = `+clockNow+`, started_by = @run
				where singleton returning id, started_at`, pgx.NamedArgs{"now": now, "run": m.RunID}).Scan(&c.ID, &c.StartedAt); err != nil {
				return err
			}
			// Members of earlier cycles decide nothing any more (a run of a superseded cycle
			// claims nothing); its renewals and end find no row, which is fine.
			if _, err := tx.Exec(ctx, `delete from usage_sync.cycle_member where cycle_id < $1`, c.ID); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `
			insert into usage_sync.cycle_member (run_id, cycle_id, worker, joined_at, expires_at)
			values (@run, @cycle, @worker, `+clockNow+`, `+clockNow+` + @ttl::interval)`,
			pgx.NamedArgs{"run": m.RunID, "cycle": c.ID, "worker": m.Worker, "ttl": m.TTL.String(), "now": now})
		return err
	})
	if err != nil {
		return Cycle{}, fmt.Errorf("join or start a cycle: %w", err)
	}
	return c, nil
}

// RenewMember keeps the run live in its cycle for another TTL. A run whose cycle was
// succeeded (its row deleted) renews nothing, and that is not an error.
func (s *Store) RenewMember(ctx context.Context, m CycleMember) error {
	_, err := s.pool.Exec(ctx, `
		update usage_sync.cycle_member set expires_at = `+clockNow+` + @ttl::interval
		where run_id = @run and ended_at is null`,
		pgx.NamedArgs{"run": m.RunID, "ttl": m.TTL.String(), "now": m.Clock.NowOrNil()})
	if err != nil {
		return fmt.Errorf("renew cycle membership of run %s: %w", m.RunID, err)
	}
	return nil
}

// EndMember marks the run ended: from now on it holds its cycle open for nobody.
func (s *Store) EndMember(ctx context.Context, m CycleMember) error {
	_, err := s.pool.Exec(ctx, `
		update usage_sync.cycle_member set ended_at = `+clockNow+` where run_id = @run and ended_at is null`,
		pgx.NamedArgs{"run": m.RunID, "now": m.Clock.NowOrNil()})
	if err != nil {
		return fmt.Errorf("end cycle membership of run %s: %w", m.RunID, err)
	}
	return nil
}

// duePredicate: the users a run selects, before leases and cycles: one user whatever its
// backoff, or everyone (--all), or the users whose backoff is over.
const duePredicate = `(case when @user::uuid is not null then s.user_id = @user::uuid
	          when @all then true
	          else s.next_attempt_at <= ` + clockNow + ` end)`

// dueFilter: still in profiles (a deleted user keeps its sync_state but is synced no more), not
// taken in this cycle by any worker unless that worker's lease ran out before it recorded an
// outcome (it crashed or stalled), not leased by another live worker, and due. A run whose
// cycle has been succeeded claims nothing more: the new cycle's runs take the users left, and
// would otherwise find them marked with the old cycle and sync them again.
const dueFilter = `
	exists (select 1 from profiles p where p.user_id = s.user_id)
	and (@cycle::bigint = 0 or (@cycle = (select c.id from usage_sync.cycle c where c.singleton)
	     and (s.cycle_id is distinct from @cycle or s.lease_owner is not null)))
	and (s.lease_expires_at is null or s.lease_expires_at < ` + clockNow + `)
	and (s.status <> 'paused' or @operator::bool)
	and ` + duePredicate

// Claim leases the next due user to owner, or returns nil when none is left for this run.
// SKIP LOCKED lets several workers and replicas claim side by side without waiting on each other.
func (s *Store) Claim(ctx context.Context, r ClaimRequest) (*Lease, error) {
	l := Lease{clock: r.Clock}
	var blocked []byte
	// The go-live is recorded by the claim itself (one round trip): a statement's CTEs share one
	// snapshot, so the row it inserts is read back from the insert, an older one from the table.
	err := s.pool.QueryRow(ctx, `
		with c as (
			update sync_state s
			set lease_owner = @owner, lease_expires_at = `+clockNow+` + @ttl::interval,
			    lease_token = s.lease_token + 1, last_run_id = @run, updated_at = now(),
			    cycle_id = case when @cycle::bigint = 0 then s.cycle_id else @cycle end
			where s.user_id = (
				select s.user_id from sync_state s
				where `+dueFilter+`
				order by s.next_attempt_at, s.user_id
				limit 1
				for update skip locked)
			returning s.user_id, s.lease_owner, s.lease_token, s.enrolled_at, s.settled_through,
			          s.consecutive_failures, s.blocked_keys
		),
		g as (
			insert into usage_sync.go_live (user_id, live_at)
			select c.user_id, greatest(c.enrolled_at, `+clockNow+`) from c where @live
			on conflict (user_id) do nothing
			returning live_at
		)
		select c.user_id::text, c.lease_owner, c.lease_token, c.enrolled_at,
		       c.settled_through::timestamp at time zone 'UTC', c.consecutive_failures, c.blocked_keys,
		       coalesce((select live_at from g), (select live_at from usage_sync.go_live v where v.user_id = c.user_id)),
		       (select v.settled_through::timestamp at time zone 'UTC' from usage_sync.go_live v where v.user_id = c.user_id)
		from c`, claimArgs(r)).
		Scan(&l.UserID, &l.Owner, &l.Token, &l.EnrolledAt, &l.SettledThrough, &l.ConsecutiveFailures, &blocked, &l.LiveAt, &l.LiveSettledThrough)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim a user: %w", err)
	}
	if err := json.Unmarshal(blocked, &l.BlockedKeys); err != nil {
		return nil, fmt.Errorf("claim a user: blocked_keys of %s: %w", l.UserID, err)
	}
	for _, at := range []**time.Time{&l.SettledThrough, &l.LiveSettledThrough} {
		if *at != nil {
			t := (*at).UTC()
			*at = &t
		}
	}
	return &l, nil
}

// namedLeftMax bounds the user ids Left returns of each kind; the counts are exact.
const namedLeftMax = 10

// Left is what a run selected but did not take, and why: neither is a failure of the run.
type Left struct {
	Leased      int      // held by another live worker
	LeasedUsers []string // the first of them, by user id
	Paused      int      // paused by an operator (usage-sync pause)
	PausedUsers []string
}

// LeftToOthers reads the users this run selects that another live worker holds, or that are
// paused: skipped, not failed, and named in the run's summary.
func (s *Store) LeftToOthers(ctx context.Context, r ClaimRequest) (Left, error) {
	var out Left
	rows, err := s.pool.Query(ctx, `
		select kind, total, user_id::text from (
			select kind, user_id, count(*) over (partition by kind) as total,
			       row_number() over (partition by kind order by user_id) as n
			from (select case when s.status = 'paused' then 'paused' else 'leased' end as kind, s.user_id
			      from sync_state s
			      where exists (select 1 from profiles p where p.user_id = s.user_id)
			        and (s.status = 'paused' or (s.lease_expires_at >= `+clockNow+` and s.lease_owner <> @owner))
			        and `+duePredicate+`) k) l
		where n <= @named
		order by kind, user_id`, claimArgs(r))
	if err != nil {
		return out, fmt.Errorf("read users left to other workers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, user string
		var n int
		if err := rows.Scan(&kind, &n, &user); err != nil {
			return out, fmt.Errorf("read users left to other workers: %w", err)
		}
		count, named := &out.Leased, &out.LeasedUsers
		if kind == "paused" {
			count, named = &out.Paused, &out.PausedUsers
		}
		*count = n
		*named = append(*named, user)
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("read users left to other workers: %w", err)
	}
	return out, nil
}

func claimArgs(r ClaimRequest) pgx.NamedArgs {
	var user *string
	if r.UserID != "" {
		user = &r.UserID
	}
	return pgx.NamedArgs{"named": namedLeftMax, "owner": r.Owner, "run": r.RunID, "cycle": r.Cycle, "ttl": r.TTL.String(), "all": r.All,
		"user": user, "now": r.Clock.NowOrNil(), "operator": r.Operator && r.UserID != "", "live": r.Live}
}

// Renew extends the lease while the user is being synced.
func (s *Store) Renew(ctx context.Context, l *Lease, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `
		update sync_state set lease_expires_at = `+clockNow+` + @ttl::interval
		where user_id = @user and lease_token = @token and lease_owner is not null`,
		pgx.NamedArgs{"user": l.UserID, "token": l.Token, "ttl": ttl.String(), "now": l.clock.NowOrNil()})
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", l.UserID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Release gives the user back without recording an outcome: the sync was abandoned (shutdown),
// so the user is due again at once, in this cycle too, and keeps its failure count.
func (s *Store) Release(ctx context.Context, l *Lease) error {
	_, err := s.pool.Exec(ctx, `
		update sync_state set lease_owner = null, lease_expires_at = null, cycle_id = null, updated_at = now()
		where user_id = $1 and lease_token = $2`, l.UserID, l.Token)
	if err != nil {
		return fmt.Errorf("release lease on %s: %w", l.UserID, err)
	}
	return nil
}

// Failure is a failed sync as sync_state shows it.
type Failure struct {
	RunID   string
	Error   string
	Kind    string
	Backoff time.Duration // until the user is due again
}

// RecordFailure marks the user's sync as failed and schedules its next attempt.
func (s *Store) RecordFailure(ctx context.Context, l *Lease, f Failure) (next time.Time, err error) {
	err = s.pool.QueryRow(ctx, `
		update sync_state set status = 'error', last_attempt_at = `+clockNow+`, last_error = @error,
		       last_error_kind = @kind, consecutive_failures = consecutive_failures + 1,
		       next_attempt_at = `+clockNow+` + @backoff::interval,
		       last_run_id = @run, lease_owner = null, lease_expires_at = null, updated_at = now()
		where user_id = @user and lease_token = @token
		returning next_attempt_at`,
		pgx.NamedArgs{"user": l.UserID, "token": l.Token, "error": f.Error, "kind": f.Kind,
			"backoff": f.Backoff.String(), "run": f.RunID, "now": l.clock.NowOrNil()}).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, ErrLeaseLost
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("record failure of %s: %w", l.UserID, err)
	}
	return next, nil
}
