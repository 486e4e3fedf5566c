package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// shadowAgain is one user with one key, and a worker in each mode, on the integrity tests' clock.
type shadowAgain struct {
	t            *testing.T
	e            *env
	u            string
	live, shadow *syncer.Syncer
}

func newShadowAgain(t *testing.T, noChargeFrom bool) *shadowAgain {
	e := setup(t, envConfig{sim: simulator.Config{Seed: 141, Users: 1, KeysPerUser: -1, TasksPerUser: -1},
		start: integrityStart, noChargeFrom: noChargeFrom})
	w := &shadowAgain{t: t, e: e, u: e.sim.Users()[0],
		live:   e.syncer(func(o *syncer.Options) { o.ChargeEnabled = true }),
		shadow: e.syncer(func(o *syncer.Options) { o.ChargeEnabled = false })}
	e.sim.AddKey(w.u, simulator.Key{ID: "k", Purpose: "zapier", CreatedAt: e.clock.Now().Add(-time.Hour)})
	return w
}

func (w *shadowAgain) cycle(s *syncer.Syncer, what string) {
	w.t.Helper()
	if sum := w.e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() || sum.Synced != 1 {
		w.t.Fatalf("%s: %+v", what, sum)
	}
}

// use makes n requests and a finished task of emails a minute from now.
func (w *shadowAgain) use(n int, task string, emails int) {
	w.e.clock.Add(time.Minute)
	now := w.e.clock.Now()
	w.e.sim.AddRequests(w.u, "k", requests(now, n)...)
	w.e.sim.AddTask(w.u, finishedTask(task, now.Add(-30*time.Second), emails))
}

func (w *shadowAgain) charged() int64 {
	return w.e.charged(w.u, "key_requests", "unlisted_requests", "task", "task_adjust")
}

// liveThenShadow goes live on 03-10 at 12:00 (10 requests, a task of 5), then back to shadow
// until 03-11 14:00: 20 requests and a task of 7 on 03-10, which settles in shadow, and 30
// requests and a task of 3 on 03-11. The task of 7 finished more than REVISION_WINDOW before
// 03-11 14:00.
// shadowPeriod is a stretch in shadow mode: 20 requests and a 7-email task (<name>-1), the day
// 03-10 settling, then 30 requests and a 3-email task (<name>-2).
func (w *shadowAgain) shadowPeriod(name string) {
	w.use(20, name+"-1", 7)
	w.cycle(w.shadow, "shadow cycle")
	w.e.settleToday()
	w.cycle(w.shadow, "shadow cycle settling 03-10")
	w.use(30, name+"-2", 3)
	w.cycle(w.shadow, "shadow cycle")
}

func (w *shadowAgain) liveThenShadow() {
	w.t.Helper()
	w.cycle(w.live, "first live cycle") // the go-live, with CHARGE_FROM empty
	w.use(10, "live-1", 5)
	w.cycle(w.live, "live cycle")
	if got := w.charged(); got != 15 {
		w.t.Fatalf("live: charged %d, want 10 requests + 5 emails", got)
	}
	w.shadowPeriod("shadow")
	w.e.clock.Add(day(w.e.clock.Now()).Add(14 * time.Hour).Sub(w.e.clock.Now()))
	w.cycle(w.shadow, "last shadow cycle")
	if got := w.charged(); got != 15 {
		w.t.Fatalf("shadow: real charges moved to %d, want them still at 15", got)
	}
	if n := w.e.q(`select count(*) from credit_ledger where user_id = $1 and source like 'shadow:%' and debited <> 0`, w.u); n != 0 {
		w.t.Fatalf("%d shadow rows debited credits", n)
	}
}

// liveAgain runs live from 03-11 14:00 on s: 40 requests and a task of 2, then 03-11 settles,
// then a replay.
func (w *shadowAgain) liveAgain(s *syncer.Syncer) {
	w.t.Helper()
	w.cycle(s, "first live cycle again")
	w.use(40, "live-2", 2)
	w.cycle(s, "live cycle again")
	w.e.settleToday()
	w.cycle(s, "live cycle settling 03-11")
	w.cycle(s, "a replay")
}

// Going back to shadow mode after going live, then live again (docs/operations.md, "Going back
// to shadow mode (and live again)"): charging starts once, at CHARGE_FROM or the user's go-live,
// and from then on every request and finished task is charged exactly once, whatever mode the
// worker was in when it observed it. In the end the real rows add up to the upstream's usage
// since the charge start — the day that settled in shadow and the task that finished long before
// charging resumed included — the shadow rows debit nothing, and verify finds no difference.
func TestLiveShadowLiveChargesEverythingOnce(t *testing.T) {
	for _, tc := range []struct {
		name         string
		noChargeFrom bool
	}{{"CHARGE_FROM=T", false}, {"CHARGE_FROM empty", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newShadowAgain(t, tc.noChargeFrom)
			e, u := w.e, w.u
			w.liveThenShadow()
			w.liveAgain(w.live)
			if got := e.charged(u, "key_requests", "unlisted_requests"); got != 100 {
				e.dumpLedger(u)
				t.Errorf("requests charged %d, want all 100 made since the charge start, each once", got)
			}
			if got := e.charged(u, "task", "task_adjust"); got != 17 {
				e.dumpLedger(u)
				t.Errorf("task emails charged %d, want all 17 since the charge start, each once", got)
			}
			if got, want := e.q(`select credits_remaining from user_credits where user_id = $1`, u), e.balances[u]-117; got != want {
				t.Errorf("balance %d, want %d", got, want)
			}
			if tc.noChargeFrom {
				if n := e.q(`select count(*) from usage_sync.go_live where user_id = $1 and live_at = $2`, u, integrityStart); n != 1 {
					t.Error("going live again moved the user's go-live")
				}
			}
			e.checkInvariants(true)
			e.checkRequestsCharged()
			rep, err := w.live.Verify(context.Background(), u)
			if err != nil || !rep.OK() {
				t.Errorf("verify after going live again: %+v, %v", rep, err)
			}
		})
	}
}

// An operator who means not to charge the shadow period says so with CHARGE_FROM: going live
// again with CHARGE_FROM at that instant (03-11 14:00, a day nothing was charged on before)
// charges only what follows it, and what was charged before the shadow period stays. The shadow
// period's usage stays shadow: only.
func TestLiveAgainWithALaterChargeFromForgivesTheShadowPeriod(t *testing.T) {
	t.Parallel()
	w := newShadowAgain(t, false)
	w.liveThenShadow()
	again := w.e.clock.Now()
	w.liveAgain(w.e.syncer(func(o *syncer.Options) { o.ChargeEnabled = true; o.ChargeFrom = &again }))
	if got := w.e.charged(w.u, "key_requests", "unlisted_requests"); got != 10+40 {
		w.e.dumpLedger(w.u)
		t.Errorf("requests charged %d, want the 10 before the shadow period and the 40 after it", got)
	}
	if got := w.e.charged(w.u, "task", "task_adjust"); got != 5+2 {
		w.e.dumpLedger(w.u)
		t.Errorf("task emails charged %d, want the 5 before the shadow period and the 2 after it", got)
	}
	if n := w.e.q(`select count(*) from credit_ledger where user_id = $1 and source not like 'shadow:%' and meta->>'task_id' like 'shadow-%'`, w.u); n != 0 {
		t.Errorf("%d real rows for tasks of the shadow period", n)
	}
}

// The first go-live with CHARGE_FROM before it (the start of a billing period) charges the
// trial's usage since CHARGE_FROM, days that settled during the trial included: a live sync
// reads from its own settled mark, which the trial never moved.
func TestGoingLiveWithAnEarlierChargeFromChargesTheTrialSinceIt(t *testing.T) {
	t.Parallel()
	w := newShadowAgain(t, false) // CHARGE_FROM 03-08 00:00
	w.shadowPeriod("trial")
	w.liveAgain(w.live)
	if got := w.e.charged(w.u, "key_requests", "unlisted_requests"); got != 20+30+40 {
		w.e.dumpLedger(w.u)
		t.Errorf("requests charged %d, want all 90 since CHARGE_FROM", got)
	}
	w.e.checkInvariants(true)
	w.e.checkRequestsCharged()
}
