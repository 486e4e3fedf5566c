package upstream

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/usage-sync/usage-sync/internal/safetext"
)

// Kind sorts failures by what the caller should do about them.
type Kind int

const (
	// KindRetryable is a 5xx, 408, network error or timeout that outlasted the retry budget:
	// try again next cycle.
	KindRetryable Kind = iota + 1
	// KindRateLimited is a 429 that outlasted the retry budget: normal operation, back off.
	KindRateLimited
	// KindAuth is a 401 or 403: the token or the user is wrong, retrying will not help.
	KindAuth
	// KindPermanent is a 400, 404 or other 4xx: the request is wrong.
	KindPermanent
	// KindDecode is a response body that is not the JSON the endpoint promises.
	KindDecode
)

func (k Kind) String() string {
	switch k {
	case KindRetryable:
		return "retryable"
	case KindRateLimited:
		return "rate_limited"
	case KindAuth:
		return "auth"
	case KindPermanent:
		return "permanent"
	case KindDecode:
		return "decode"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// kindOfStatus classifies a non-2xx status.
func kindOfStatus(status int) Kind {
	switch {
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status == http.StatusRequestTimeout || status >= 500:
		return KindRetryable
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return KindAuth
	}
	return KindPermanent
}

// Error is a failed upstream call. It never holds a token: tokens travel only in the
// Authorization header, and server messages are scrubbed of the token before they are kept.
type Error struct {
	Op         string // e.g. "list keys"
	Path       string // URL path only, e.g. "/api/v1/api-keys"
	UserID     string
	Status     int // 0 for network errors
	Kind       Kind
	Message    string            // the server's "error" text (at most 200 chars) or a decode explanation
	Fields     map[string]string // a 400's "fields"
	RetryAfter time.Duration     // the last Retry-After seen
	Attempts   int
	Err        error // the cause (network or json error), if any
}

// Error renders one line, e.g.
// "list keys for <user>: GET /api/v1/api-keys: 401 Unauthorized: invalid token (auth, 1 attempt)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.UserID != "" {
		b.WriteString(" for ")
		b.WriteString(e.UserID)
	}
	b.WriteString(": GET ")
	b.WriteString(e.Path)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d %s", e.Status, http.StatusText(e.Status))
	}
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if msg != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(msg))
	}
	if len(e.Fields) > 0 {
		names := make([]string, 0, len(e.Fields))
		for name := range e.Fields {
			names = append(names, name)
		}
		sort.Strings(names)
		b.WriteString(" [")
		for i, name := range names {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name)
			b.WriteString(": ")
			b.WriteString(oneLine(e.Fields[name]))
		}
		b.WriteString("]")
	}
	fmt.Fprintf(&b, " (%s, %d attempt", e.Kind, e.Attempts)
	if e.Attempts != 1 {
		b.WriteString("s")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry-after %s", e.RetryAfter)
	}
	b.WriteString(")")
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// oneLine makes text safe for a one-line error, a log line and a terminal.
func oneLine(s string) string { return safetext.Clean(s, safetext.MaxDefault) }

// maxMessage bounds what a server's error text may add to a log line.
const maxMessage = 200
