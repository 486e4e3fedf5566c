package syncer_test

import (
	"context"
	"time"
)

// dumpKey logs a key's days side by side (simulator, mirror, ledger) when an invariant fails.
func (e *env) dumpKey(user, keyID string) {
	for d := day(e.chargeFrom); !d.After(day(e.clock.Now())); d = d.AddDate(0, 0, 1) {
		sim := e.sim.KeyRequests(user, keyID, d, d.AddDate(0, 0, 1))
		row := e.q(`select coalesce((select count from usage_sync.key_days where key_id=$1 and day=$2), -1)`, keyID, d)
		led := e.q(`select coalesce(sum(amount),0) from credit_ledger where source='key_requests' and subject=$1`, keyID+"/"+d.Format(time.DateOnly))
		e.t.Logf("key %s day %s: sim %d row %d charged %d", keyID, d.Format(time.DateOnly), sim, row, led)
	}
	var st string
	_ = e.db.QueryRow(context.Background(), `select status||' '||coalesce(settled_through::text,'-')||' '||blocked_keys::text from sync_state where user_id=$1`, user).Scan(&st)
	e.t.Logf("sync_state %s; now %s", st, e.clock.Now())
}

// dumpTasks logs every task whose charges disagree with the simulator.
func (e *env) dumpTasks(user string) {
	for _, tk := range e.sim.Tasks(user) {
		led := e.q(`select coalesce(sum(amount),0) from credit_ledger where source in ('task','task_adjust') and subject=$1`, tk.ID)
		if tk.Finished && billable(tk) != led || !tk.Finished && led != 0 {
			e.t.Logf("task %s created %s finished %v done %d failed %d emails %d results %v: want %d charged %d", tk.ID, tk.CreatedAt, tk.Finished, tk.Done, tk.Failed, tk.Emails, tk.Results, billable(tk), led)
		}
	}
}

// dumpLedger logs a user's request charges and per-purpose days when the request total disagrees.
func (e *env) dumpLedger(user string) {
	rows, err := e.db.Query(context.Background(), `
		select source || ' ' || subject || ' ' || amount from credit_ledger where user_id = $1 and source like '%requests' order by id`, user)
	if err == nil {
		for rows.Next() {
			var line string
			_ = rows.Scan(&line)
			e.t.Logf("ledger %s", line)
		}
		rows.Close()
	}
	for _, k := range e.sim.Keys(user) {
		e.t.Logf("key %s purpose %s revoked %v lifetime %d", k.ID, k.Purpose, k.Revoked, k.Lifetime)
	}
	var st string
	_ = e.db.QueryRow(context.Background(), `select status||' '||coalesce(settled_through::text,'-')||' '||blocked_keys::text from sync_state where user_id=$1`, user).Scan(&st)
	e.t.Logf("sync_state %s; now %s", st, e.clock.Now())
}
