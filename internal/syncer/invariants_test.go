package syncer_test

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// checkInvariants asserts the invariants I1–I3 of docs/design.md ("Invariants") for every user,
// and I4 when converged is true (every window read after its last request, every task finished
// and read).
func (e *env) checkInvariants(converged bool) {
	e.t.Helper()
	ctx := context.Background()
	for user, start := range e.balances {
		// I1: starting balance − credits_remaining = Σ debited.
		remaining := e.q(`select credits_remaining from user_credits where user_id = $1`, user)
		debited := e.q(`select coalesce(sum(debited), 0) from credit_ledger where user_id = $1`, user)
		if start-remaining != debited {
			e.t.Errorf("I1 user %s: balance fell by %d but the ledger debited %d", user, start-remaining, debited)
		}
		// I3: never below zero; 0 <= debited <= amount (also enforced by checks).
		if remaining < 0 {
			e.t.Errorf("I3 user %s: credits_remaining %d", user, remaining)
		}
		if bad := e.q(`select count(*) from credit_ledger where user_id = $1 and (debited < 0 or debited > amount or (source like 'shadow:%' and debited <> 0))`, user); bad != 0 {
			e.t.Errorf("I3 user %s: %d ledger rows with debited outside [0, amount]", user, bad)
		}
		// I2: charges for a key never exceed the requests it had made.
		from := e.startOf(user)
		for _, k := range e.sim.Keys(user) {
			charged := e.q(`select coalesce(sum(amount), 0) from credit_ledger where user_id = $1 and source = 'key_requests' and meta->>'key_id' = $2`, user, k.ID)
			made := e.sim.KeyRequests(user, k.ID, from, time.Time{})
			if charged > made {
				e.t.Errorf("I2 key %s: charged %d for %d requests made since CHARGE_FROM", k.ID, charged, made)
			}
			if converged && !k.Revoked && charged != made {
				e.t.Errorf("I4 key %s: charged %d, upstream reports %d requests since CHARGE_FROM", k.ID, charged, made)
				e.dumpKey(user, k.ID)
			}
		}
		if converged {
			var want int64
			for _, tk := range e.sim.Tasks(user) {
				if tk.Finished && !tk.CreatedAt.Before(from) {
					want += billable(tk)
				}
			}
			got := e.q(`select coalesce(sum(amount), 0) from credit_ledger where user_id = $1 and source in ('task', 'task_adjust')`, user)
			if got != want {
				e.t.Errorf("I4 user %s: tasks charged %d, finished tasks since CHARGE_FROM hold %d billable emails", user, got, want)
				e.dumpTasks(user)
			}
		}
	}
	// I2: no (user, source, source_id) twice (the unique key says so; this proves it is there).
	if dup := e.q(`select count(*) - count(distinct (user_id, source, source_id)) from credit_ledger`); dup != 0 {
		e.t.Errorf("I2: %d duplicate ledger keys", dup)
	}
	_ = ctx
}

// startOf is when the user's charging starts: CHARGE_FROM, or with it empty the user's go-live
// as the worker recorded it (never, as far away as can be, before a live worker took the user).
func (e *env) startOf(user string) time.Time {
	e.t.Helper()
	if e.opts.ChargeFrom != nil {
		return e.chargeFrom
	}
	var at *time.Time
	if err := e.db.QueryRow(context.Background(), `select live_at from usage_sync.go_live where user_id = $1`, user).Scan(&at); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		e.t.Fatal(err)
	}
	if at == nil {
		return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return *at
}

// checkRequestsCharged asserts I4 for API requests once every day with requests is settled
// (settleToday): each user's key_requests and unlisted_requests add up to every request its keys
// made since its charge start, revoked keys included.
func (e *env) checkRequestsCharged() {
	e.t.Helper()
	for user := range e.balances {
		from := e.startOf(user)
		var made int64
		for _, k := range e.sim.Keys(user) {
			made += e.sim.KeyRequests(user, k.ID, from, time.Time{})
		}
		charged := e.q(`select coalesce(sum(amount), 0) from credit_ledger where user_id = $1 and source in ('key_requests', 'unlisted_requests')`, user)
		if charged != made {
			e.t.Errorf("I4 user %s: requests charged %d (key_requests + unlisted_requests), its keys made %d since %s, revoked ones included",
				user, charged, made, from.Format(time.RFC3339))
			e.dumpLedger(user)
		}
	}
}

// settleToday moves the clock past the end of today plus the settle lag: the next sync reads
// today's window as settled.
func (e *env) settleToday() {
	e.t.Helper()
	end := day(e.clock.Now()).Add(24*time.Hour + syncer.SettleLagDefault + time.Minute)
	e.clock.Add(end.Sub(e.clock.Now()))
}

// billable is the task cost of docs/design.md ("Tasks"), computed independently of the code
// under test from the simulator's ground truth: the result counts without the aggregates when
// verification_status is sent, else job_status.completed (the emails done) when job_status is
// sent, else every email.
func billable(tk simulator.TaskState) int64 {
	switch {
	case tk.Results != nil:
		var n int64
		for name, c := range tk.Results {
			if name != "role_based" && name != "disposable_domain_emails" {
				n += c
			}
		}
		return n
	case !tk.OmitJobStatus:
		return int64(tk.Done)
	default:
		return int64(tk.Emails)
	}
}
