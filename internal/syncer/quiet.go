package syncer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/usage-sync/usage-sync/internal/upstream"
)

// listingFingerprint digests what of a lifetime key listing moves when a key is used (its id,
// total_requests and last_used_at) together with the settings the windows were read under
// (CHARGE_FROM, shadow), so a changed setting never lets a sync skip windows read under the old
// one. It is "" when the listing cannot vouch for anything: a key without a total, or entries
// dropped for lacking an id.
func listingFingerprint(l upstream.KeyList, chargeFrom time.Time, shadow bool) string {
	if l.Dropped > 0 {
		return ""
	}
	lines := make([]string, 0, len(l.Keys))
	for _, k := range l.Keys {
		if k.TotalRequests == nil {
			return ""
		}
		used := int64(0)
		if k.LastUsedAt != nil {
			used = k.LastUsedAt.UnixNano()
		}
		lines = append(lines, fmt.Sprintf("%q %d %d", k.ID, *k.TotalRequests, used))
	}
	sort.Strings(lines)
	h := sha256.New()
	fmt.Fprintf(h, "v1 %s %t\n", chargeFrom.UTC().Format(time.RFC3339Nano), shadow)
	for _, line := range lines {
		fmt.Fprintln(h, line)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// settleDue keeps the days whose one settling read is due (at or after day end + lag): the only
// windows a quiet user's sync reads.
func settleDue(days []time.Time, now time.Time, lag time.Duration) []time.Time {
	var out []time.Time
	for _, d := range days {
		if !now.Before(d.Add(day + lag)) {
			out = append(out, d)
		}
	}
	return out
}
