package syncer

import (
	"fmt"
	"time"

	"github.com/usage-sync/usage-sync/internal/upstream"
)

// A negative count is inconsistent data, wherever the upstream reports it: it is not stored,
// nothing is charged on its strength, and the key or task is shown as blocked in sync_state
// (degraded) until the upstream reports sane counts again.

// taskSubject names a task in sync_state.blocked_keys, apart from key ids.
func taskSubject(id string) string { return "task/" + id }

// negativeKeys names every key with a negative total in the lifetime listing or in any
// window this pass read, with the reason.
func negativeKeys(in planInput) map[string]string {
	out := map[string]string{}
	note := func(k upstream.Key, where string) {
		if _, seen := out[k.ID]; !seen && k.TotalRequests != nil && *k.TotalRequests < 0 {
			out[k.ID] = fmt.Sprintf("%s reports %d requests: a negative count is inconsistent data", where, *k.TotalRequests)
		}
	}
	for _, k := range in.lifetime.Keys {
		note(k, "the lifetime listing")
	}
	for _, w := range in.windows {
		d := w.day.Format(time.DateOnly)
		for _, k := range w.keys.Keys {
			note(k, "window "+d)
		}
		if w.partial != nil {
			for _, k := range w.partial.Keys {
				note(k, "window "+d+" from CHARGE_FROM")
			}
		}
	}
	return out
}

// negative reports whether a reported count is below zero.
func negative(n *int64) bool { return n != nil && *n < 0 }

// storable is a count as it may be stored: a negative one reads as unknown, so the stored
// value stays.
func storable(n *int64) *int64 {
	if negative(n) {
		return nil
	}
	return n
}
