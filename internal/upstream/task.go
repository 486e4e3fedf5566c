package upstream

import (
	"iter"
	"strings"
)

// isAggregate reports whether a verification_status name is one of the overlapping
// aggregates: they count emails already counted under a result, so adding them would
// count those emails twice (docs/design.md, "The upstream API", point 3).
func isAggregate(name string) bool {
	switch name {
	case "role_based", "disposable_domain_emails":
		return true
	}
	return false
}

// Results yields the verification results the metrics hold: each verification_status name
// lower-cased and trimmed, with its count (a negative one as zero), the overlapping aggregates
// left out. The names are either vocabulary (pre- and post-2026); internal/usage maps them to
// the dashboard's columns.
func (m TaskMetrics) Results() iter.Seq2[string, int64] {
	return func(yield func(string, int64) bool) {
		for name, n := range m.VerificationStatus {
			name = strings.ToLower(strings.TrimSpace(name))
			if isAggregate(name) {
				continue
			}
			if !yield(name, max(n, 0)) {
				return
			}
		}
	}
}

// ResultTotal is the number of emails with a verification result: every verification_status
// count except the aggregates. 0 when verification_status is absent.
func (m TaskMetrics) ResultTotal() int64 {
	var total int64
	for _, n := range m.Results() {
		total += n
	}
	return total
}
