package upstream

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/usage-sync/usage-sync/internal/safetext"
)

// The upstream is not trusted: everything it says is bounded, cleaned or checked here before
// the worker stores, charges, logs or prints it.

const (
	// maxName bounds a key's name, a purpose or a task's source.
	maxName = 200
	// maxURL bounds a task's webhook_url.
	maxURL = 2048
	// maxCount is the largest count the dashboard's integer columns (api_usage.count, the tasks
	// counts, credit_ledger.amount) hold; a larger one is rejected as a decode error rather
	// than failing the write every cycle.
	maxCount = math.MaxInt32
)

// Reasons an entry of a listing is dropped.
const (
	dropNoID        = "no id"
	dropBadID       = "bad id" // too long, control characters or invalid UTF-8
	dropNoCreatedAt = "no valid created_at"
	dropOtherUser   = "another user's"
)

// Drops counts the entries of one reply the worker could not use, by reason.
type Drops map[string]int

func (d *Drops) add(why string) {
	if *d == nil {
		*d = Drops{}
	}
	(*d)[why]++
}

// Total is the number of entries dropped.
func (d Drops) Total() int {
	n := 0
	for _, c := range d {
		n += c
	}
	return n
}

// String lists the reasons, e.g. "2 bad id, 1 no id".
func (d Drops) String() string {
	parts := make([]string, 0, len(d))
	for why, n := range d {
		parts = append(parts, fmt.Sprintf("%d %s", n, why))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// entryID reads an entry's id, or says why it has none the worker can use. A bad id is
// dropped, never repaired: two bad ids could be cleaned into one.
func entryID(o object) (string, string) {
	raw := o.str("id")
	if raw == "" {
		return "", dropNoID
	}
	id, ok := safetext.ID(raw)
	if !ok {
		return "", dropBadID
	}
	return id, ""
}

func boundsError(what string, n int64) error {
	return &decodeError{msg: fmt.Sprintf("%s is %d: a count outside ±%d cannot be stored", what, n, maxCount)}
}

func checkCount(what string, n *int64) error {
	if n != nil && (*n > maxCount || *n < -maxCount) {
		return boundsError(what, *n)
	}
	return nil
}

func checkCounts(what string, m map[string]int64) error {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := m[name]
		if err := checkCount(fmt.Sprintf("%s %q", what, safetext.Clean(name, maxName)), &n); err != nil {
			return err
		}
	}
	return nil
}

func (l KeyList) checkBounds() error {
	for _, k := range l.Keys {
		if err := checkCount("total_requests of key "+k.ID, k.TotalRequests); err != nil {
			return err
		}
	}
	return nil
}

func (m UsageMetrics) checkBounds() error {
	if err := checkCount("total_requests", m.TotalRequests); err != nil {
		return err
	}
	if err := checkCount("total_api_keys", m.TotalAPIKeys); err != nil {
		return err
	}
	if err := checkCounts("requests_by_purpose", m.RequestsByPurpose); err != nil {
		return err
	}
	return checkCounts("api_keys_by_purpose", m.APIKeysByPurpose)
}

// checkBounds checks the task's raw counts, then the emails with a result, which sum counts that
// each fit but together may not. Every column and billable count the worker derives from the
// results is at most their total, so that one check bounds them all.
func (t Task) checkBounds() error {
	what := "task " + t.ID + " "
	m := t.Metrics
	if err := checkCount(what+"total_email_addresses", m.TotalEmailAddresses); err != nil {
		return err
	}
	if err := checkCounts(what+"job_status", m.JobStatus); err != nil {
		return err
	}
	if err := checkCounts(what+"verification_status", m.VerificationStatus); err != nil {
		return err
	}
	// Billed by the results whenever verification_status is present (internal/usage).
	if n := m.ResultTotal(); n > maxCount {
		return boundsError(what+"billable emails", n)
	}
	return nil
}

// NegativeCount names the first negative count of the task, or "" when there is none. A
// negative count is inconsistent data: the task is neither stored nor charged.
func (t Task) NegativeCount() string {
	m := t.Metrics
	if m.TotalEmailAddresses != nil && *m.TotalEmailAddresses < 0 {
		return fmt.Sprintf("total_email_addresses is %d", *m.TotalEmailAddresses)
	}
	for _, set := range []struct {
		name string
		m    map[string]int64
	}{{"job_status", m.JobStatus}, {"verification_status", m.VerificationStatus}} {
		names := make([]string, 0, len(set.m))
		for name, n := range set.m {
			if n < 0 {
				names = append(names, name)
			}
		}
		if len(names) > 0 {
			sort.Strings(names)
			return fmt.Sprintf("%s %q is %d", set.name, safetext.Clean(names[0], maxName), set.m[names[0]])
		}
	}
	return ""
}

// satAdd adds without wrapping, so a merge of absurd counts stays absurd and is rejected.
func satAdd(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}

func sameUser(a, b string) bool { return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b)) }

// ownTasks drops the entries of a page that name another user than the one asked for. A page
// whose every entry names someone else is not this user's reply at all: a decode error.
func ownTasks(page TaskPage, user string) (TaskPage, error) {
	kept := page.Tasks[:0]
	other := ""
	for _, t := range page.Tasks {
		if t.UserID != "" && !sameUser(t.UserID, user) {
			page.Drops.add(dropOtherUser)
			page.Dropped++
			other = t.UserID
			continue
		}
		kept = append(kept, t)
	}
	page.Tasks = kept
	if len(kept) == 0 && other != "" {
		return TaskPage{}, &decodeError{msg: fmt.Sprintf("the reply lists only tasks of user %s, not of the user asked for", safetext.Clean(other, maxName))}
	}
	return page, nil
}

// ownUsage rejects per-purpose totals of another user.
func ownUsage(m UsageMetrics, user string) (UsageMetrics, error) {
	if m.UserID != "" && !sameUser(m.UserID, user) {
		return UsageMetrics{}, &decodeError{msg: fmt.Sprintf("the reply holds the totals of user %s, not of the user asked for", safetext.Clean(m.UserID, maxName))}
	}
	return m, nil
}

// kept is what an error keeps of what the server said: its message and at most maxFields
// field reasons, scrubbed of the token and cleaned, since they reach sync_state, logs and
// terminals.
func kept(eb errorBody, token string) (string, map[string]string) {
	var fields map[string]string
	names := make([]string, 0, len(eb.fields))
	for name := range eb.fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if len(fields) >= maxFields {
			break
		}
		if fields == nil {
			fields = make(map[string]string, min(len(eb.fields), maxFields))
		}
		fields[safetext.Clean(redact(name, token), maxName)] = safetext.Clean(redact(eb.fields[name], token), maxMessage)
	}
	return safetext.Clean(redact(eb.message, token), maxMessage), fields
}

// noRedirects returns a copy of hc that never follows a redirect: the token must go to the
// configured origin only, and an answer from anywhere else must not be mirrored or charged.
func noRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// redirectMessage is a 3xx's error text: it names where the upstream pointed, so an operator
// can fix UPSTREAM_BASE_URL if the move is genuine.
func redirectMessage(location, token string) string {
	loc := safetext.Clean(redact(location, token), maxMessage)
	if loc == "" {
		loc = "(no Location)"
	}
	return fmt.Sprintf("redirect to %s not followed: point UPSTREAM_BASE_URL at the final URL if the API moved", loc)
}
