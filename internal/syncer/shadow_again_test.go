package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/simulator"
	"github.com/usage-sync/usage-sync/internal/syncer"
)

// Going back to shadow mode after going live, then live again (docs/operations.md, "Going back
// to shadow mode (and live again)"): charging starts once, at CHARGE_FROM or the user's go-live,
// and from then on every request and finished task is charged exactly once, whatever mode the
// worker was in when it observed it. Here the worker goes live, back to shadow for a day and a
// half (03-10 settles while in shadow, and a task finishes more than REVISION_WINDOW before
// charging resumes), then live again; in the end the real rows add up to the upstream's usage
// since the charge start, the shadow rows debit nothing, and verify finds no difference.
func TestLiveShadowLiveChargesEverythingOnce(t *testing.T) {
	for _, tc := range []struct {
		name         string
		noChargeFrom bool
	}{{"CHARGE_FROM=T", false}, {"CHARGE_FROM empty", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, envConfig{sim: simulator.Config{Seed: 141, Users: 1, KeysPerUser: -1, TasksPerUser: -1},
				start: integrityStart, noChargeFrom: tc.noChargeFrom})
			u := e.sim.Users()[0]
			e.sim.AddKey(u, simulator.Key{ID: "k", Purpose: "zapier", CreatedAt: e.clock.Now().Add(-time.Hour)})
			live := e.syncer(func(o *syncer.Options) { o.ChargeEnabled = true })
			shadow := e.syncer(func(o *syncer.Options) { o.ChargeEnabled = false })
			cycle := func(s *syncer.Syncer, what string) {
				t.Helper()
				if sum := e.cycle(s, syncer.CycleOptions{All: true}); !sum.OK() || sum.Synced != 1 {
					t.Fatalf("%s: %+v", what, sum)
				}
			}
			use := func(n int, task string, emails int) {
				e.clock.Add(time.Minute)
				now := e.clock.Now()
				e.sim.AddRequests(u, "k", requests(now, n)...)
				e.sim.AddTask(u, finishedTask(task, now.Add(-30*time.Second), emails))
			}
			realCharged := func() int64 {
				return e.charged(u, "key_requests", "unlisted_requests", "task", "task_adjust")
			}

			// Live, 03-10 12:00: the go-live (with CHARGE_FROM empty); 10 requests and a task of 5.
			cycle(live, "first live cycle")
			use(10, "live-1", 5)
			cycle(live, "live cycle")
			if got := realCharged(); got != 15 {
				t.Fatalf("live: charged %d, want 10 requests + 5 emails", got)
			}

			// Back in shadow from 03-10 12:02 to 03-11 14:00: 20 requests and a task of 7 on
			// 03-10 (which settles in shadow), 30 requests and a task of 3 on 03-11.
			use(20, "shadow-1", 7)
			cycle(shadow, "shadow cycle")
			e.settleToday()
			cycle(shadow, "shadow cycle settling 03-10")
			use(30, "shadow-2", 3)
			cycle(shadow, "shadow cycle")
			e.clock.Add(day(e.clock.Now()).Add(14 * time.Hour).Sub(e.clock.Now()))
			cycle(shadow, "last shadow cycle")
			if got := realCharged(); got != 15 {
				t.Fatalf("shadow: real charges moved to %d, want them still at 15", got)
			}
			if n := e.q(`select count(*) from credit_ledger where user_id = $1 and source like 'shadow:%' and debited <> 0`, u); n != 0 {
				t.Fatalf("%d shadow rows debited credits", n)
			}

			// Live again, 03-11 14:00: 40 requests and a task of 2; then 03-11 settles.
			cycle(live, "first live cycle again")
			use(40, "live-2", 2)
			cycle(live, "live cycle again")
			e.settleToday()
			cycle(live, "live cycle settling 03-11")
			cycle(live, "a replay")

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
			e.checkInvariants(true)
			e.checkRequestsCharged()
			rep, err := live.Verify(context.Background(), u)
			if err != nil || !rep.OK() {
				t.Errorf("verify after going live again: %+v, %v", rep, err)
			}
		})
	}
}
