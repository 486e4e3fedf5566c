package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// Family is what a charge is for; it decides the ledger sources a charge is posted under.
type Family string

const (
	FamilyTask Family = "task"         // posted as task, then task_adjust when the count grows
	FamilyKey  Family = "key_requests" // posted as key_requests, one row per increment of a window total
	// FamilyUnlisted is a (purpose, day)'s requests that no key_requests row accounts for (keys
	// revoked before any listing showed them): subject "<purpose>/<UTC day>", posted as
	// unlisted_requests, one row per increment. What was charged so far for it counts the
	// purpose's key_requests rows of that day too, so a request is charged once either way.
	FamilyUnlisted Family = "unlisted_requests"
)

// UnlistedSubject names a (purpose, day) in the ledger.
func UnlistedSubject(purpose string, day time.Time) string {
	return purpose + "/" + day.UTC().Format(time.DateOnly)
}

// ShadowPrefix marks ledger sources written in shadow mode (CHARGE_ENABLED=false).
const ShadowPrefix = "shadow:"

// LedgerSources are the sources the worker posts ledger rows under (shadow rows add
// ShadowPrefix). The metrics create a series at 0 for each, so a new source is one line here.
func LedgerSources() []string {
	return []string{
		"task",
		"task_adjust",
		"key_requests",
		"unlisted_requests",
	}
}

// Charge is one observation of usage: Subject (a task id, or "<key id>/<UTC day>") had reached
// Total chargeable units. Charging posts the part of Total not yet charged for Subject, so
// replaying an observation, or an older one, posts nothing.
type Charge struct {
	UserID  string
	Family  Family
	Subject string
	Total   int64
	Meta    map[string]any
}

// Posted is a ledger row a charge batch wrote.
type Posted struct {
	UserID, Source, SourceID, Subject string
	Amount, Debited, CreditsAfter     int64
}

// Revision is an observation whose total fell below what was already charged: logged, never refunded.
type Revision struct {
	UserID, Subject string
	Family          Family
	Total, Charged  int64
}

// ChargeResult is what one batch did.
type ChargeResult struct {
	Posted    []Posted
	Revisions []Revision
	Amount    int64 // Σ amount of the rows posted
	Debited   int64 // Σ debited
}

// add folds another batch's result into r.
func (r *ChargeResult) add(o ChargeResult) {
	r.Posted = append(r.Posted, o.Posted...)
	r.Revisions = append(r.Revisions, o.Revisions...)
	r.Amount += o.Amount
	r.Debited += o.Debited
}

// UnlistedPrefix names an inconsistent (purpose, day) in sync_state.blocked_keys, apart from
// key ids and tasks.
const UnlistedPrefix = "unlisted/"

// unlistedInconsistent names each (purpose, day) whose total fell below what its keys and
// earlier remainders were charged: inconsistent data, charged nothing, shown as blocked.
func unlistedInconsistent(r ChargeResult) map[string]string {
	out := map[string]string{}
	for _, rev := range r.Revisions {
		if rev.Family == FamilyUnlisted {
			out[UnlistedPrefix+rev.Subject] = fmt.Sprintf("the per-purpose total %d is below the %d requests already charged for this purpose and day: inconsistent data, nothing charged for it",
				rev.Total, rev.Charged)
		}
	}
	return out
}

// Shortfall is the usage posted but not covered by the balance.
func (r ChargeResult) Shortfall() int64 { return r.Amount - r.Debited }

// chargeTx posts a batch of charges, for any number of users, in two statements:
//  1. lock each user's charging (a transaction advisory lock, taken in user order so two batches
//     cannot deadlock) and their user_credits rows;
//  2. one statement that, under those locks and with a snapshot taken after them, reads what
//     each subject was charged so far, inserts the increments with the greedy debit
//     min(amount, balance left) computed by a running sum, and takes the debits off the balances.
//
// The locks make "read what was charged, then charge the rest" atomic across workers; the
// ledger's unique key is the second line of defence (a duplicate is "already done").
func chargeTx(ctx context.Context, tx pgx.Tx, charges []Charge, shadow bool) (ChargeResult, error) {
	if len(charges) == 0 {
		return ChargeResult{}, nil
	}
	in, err := chargeColumns(charges)
	if err != nil {
		return ChargeResult{}, err
	}
	if err := lockCharging(ctx, tx, in.users); err != nil {
		return ChargeResult{}, err
	}
	prefix := ""
	if shadow {
		prefix = ShadowPrefix
	}
	rows, err := tx.Query(ctx, chargeSQL, in.uids, in.fams, in.subjects, in.totals, in.metas, prefix, shadow)
	if err != nil {
		return ChargeResult{}, fmt.Errorf("post charges: %w", err)
	}
	defer rows.Close()
	return scanPosted(rows)
}

// chargeInput is a batch of charges as the columns chargeSQL unnests, and its users in order.
type chargeInput struct {
	users                       []string
	uids, fams, subjects, metas []string
	totals                      []int64
}

func chargeColumns(charges []Charge) (chargeInput, error) {
	n := len(charges)
	in := chargeInput{uids: make([]string, n), fams: make([]string, n), subjects: make([]string, n),
		metas: make([]string, n), totals: make([]int64, n)}
	seen := map[string]bool{}
	for i, c := range charges {
		if !seen[c.UserID] {
			seen[c.UserID] = true
			in.users = append(in.users, c.UserID)
		}
		m := c.Meta
		if m == nil {
			m = map[string]any{}
		}
		b, err := json.Marshal(m)
		if err != nil {
			return in, fmt.Errorf("charge meta for %s: %w", c.Subject, err)
		}
		in.uids[i], in.fams[i], in.subjects[i], in.totals[i], in.metas[i] = c.UserID, string(c.Family), c.Subject, c.Total, string(b)
	}
	sort.Strings(in.users)
	return in, nil
}

// chargeLockClass is the first key of the charging advisory locks ("USCC" in ASCII), which keeps them
// apart from other applications' advisory locks on the same database.
const chargeLockClass int32 = 1431520067

// lockCharging takes each user's charging lock and user_credits row, in user order so that two
// batches cannot deadlock.
func lockCharging(ctx context.Context, tx pgx.Tx, users []string) error {
	if _, err := tx.Exec(ctx, `
		select pg_advisory_xact_lock($2, hashtext(u)) from unnest($1::text[]) as u order by u`, users, chargeLockClass); err != nil {
		return fmt.Errorf("lock charging for %d users: %w", len(users), err)
	}
	if _, err := tx.Exec(ctx, `
		select 1 from user_credits where user_id = any($1::uuid[]) order by user_id for update`, users); err != nil {
		return fmt.Errorf("lock balances: %w", err)
	}
	return nil
}

// scanPosted reads chargeSQL's rows: the ledger rows posted, and the revisions down it refused.
func scanPosted(rows pgx.Rows) (ChargeResult, error) {
	var res ChargeResult
	for rows.Next() {
		var (
			kind string
			p    Posted
		)
		if err := rows.Scan(&kind, &p.UserID, &p.Source, &p.SourceID, &p.Subject, &p.Amount, &p.Debited, &p.CreditsAfter); err != nil {
			return res, fmt.Errorf("post charges: %w", err)
		}
		if kind == "down" {
			res.Revisions = append(res.Revisions, Revision{UserID: p.UserID, Family: Family(p.Source), Subject: p.Subject, Total: p.Amount, Charged: p.Debited})
			continue
		}
		res.Posted = append(res.Posted, p)
		res.Amount += p.Amount
		res.Debited += p.Debited
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("post charges: %w", err)
	}
	return res, nil
}

// chargeSQL: $1 user ids, $2 families, $3 subjects, $4 observed totals, $5 meta, $6 source
// prefix (” or 'shadow:'), $7 shadow. Balances are read here, after the locks, so no debit is
// computed from a balance or a charged-so-far that a concurrent batch has since changed.
const chargeSQL = `
with input as (
	select distinct on (user_id, family, subject) user_id, family, subject, total, meta, ord
	from unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[])
	     with ordinality as i(user_id, family, subject, total, meta, ord)
	order by user_id, family, subject, total desc, ord
),
charged as (
	select i.*, coalesce((
		select sum(l.amount) from credit_ledger l
		where l.user_id = i.user_id and l.subject = i.subject
		  and l.source = any(case i.family
		                       when 'task' then array[$6 || 'task', $6 || 'task_adjust']
		                       else array[$6 || i.family] end)), 0)::bigint
	  -- A (purpose, day) has also been charged what its keys' key_requests rows of the day hold:
	  -- the keys of the purpose that day as the worker recorded them (usage_sync.key_days).
	  + case when i.family <> 'unlisted_requests' then 0 else coalesce((
		select sum(l.amount) from usage_sync.key_days k
		join credit_ledger l on l.user_id = i.user_id and l.source = $6 || 'key_requests'
		     and l.subject = k.key_id || '/' || to_char(k.day at time zone 'UTC', 'YYYY-MM-DD')
		where k.user_id = i.user_id and k.purpose = left(i.subject, length(i.subject) - 11)
		  and k.day = (right(i.subject, 10)::date::timestamp at time zone 'UTC')), 0) end::bigint as so_far
	from input i
),
todo as (
	select c.*, c.total - c.so_far as amount,
	       coalesce(sum(c.total - c.so_far) over (partition by c.user_id order by c.ord
	                rows between unbounded preceding and 1 preceding), 0) as before
	from charged c
	where c.total > c.so_far
),
posting as (
	select t.user_id,
	       $6 || case when t.family <> 'task' then t.family
	                  when t.so_far = 0 then 'task' else 'task_adjust' end as source,
	       case when t.family = 'task' and t.so_far = 0 then t.subject
	            else t.subject || '/' || t.total end as source_id,
	       t.subject, t.amount::integer as amount,
	       case when $7 then 0
	            else least(t.amount, greatest(0, coalesce(b.credits_remaining, 0) - t.before)) end::integer as debited,
	       case when $7 then coalesce(b.credits_remaining, 0)
	            else greatest(0, coalesce(b.credits_remaining, 0) - t.before - t.amount) end::integer as credits_after,
	       t.meta || jsonb_build_object('observed_total', t.total, 'charged_before', t.so_far) as meta,
	       t.ord
	from todo t left join user_credits b on b.user_id = t.user_id
),
ins as (
	insert into credit_ledger (user_id, source, source_id, subject, amount, debited, credits_after, meta)
	select user_id, source, source_id, subject, amount, debited, credits_after, meta from posting order by user_id, ord
	on conflict (user_id, source, source_id) do nothing
	returning user_id, source, source_id, subject, amount, debited, credits_after
),
upd as (
	update user_credits u
	set credits_remaining = u.credits_remaining - d.debited, updated_at = now()
	from (select user_id, sum(debited) as debited from ins group by user_id having sum(debited) > 0) d
	where u.user_id = d.user_id
	returning u.user_id
)
select 'posted', user_id::text, source, source_id, subject, amount::bigint, debited::bigint, credits_after::bigint from ins
union all
select 'down', user_id::text, family, '', subject, total, so_far, 0 from charged where total < so_far`
