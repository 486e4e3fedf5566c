package upstream

import (
	"strconv"
	"strings"
	"time"
)

// Observer is told about every HTTP attempt and every retry, for metrics. Config.Observer is nil
// by default; its methods run on the caller's goroutine and must not block.
type Observer interface {
	// Request reports one attempt: op is "keys", "usage" or "tasks"; code is the HTTP status,
	// or "error" when no response came back (network error, timeout, cancellation).
	Request(op, code string)
	// Retry reports that a call's attempt failed and the call will be tried again.
	Retry(op string)
	// InFlight adds delta (+1 as an attempt is sent, -1 once its response is read) to the
	// attempts in flight.
	InFlight(delta int)
	// RateLimitWait reports how long an attempt waited for Config.RateLimit (0 when it did not
	// wait); it is not called when there is no rate limit.
	RateLimitWait(d time.Duration)
}

// opLabel names a call's endpoint family for metrics, from its path so that it stays put when
// log wording changes.
func opLabel(path string) string {
	switch {
	case strings.HasPrefix(path, "/api-keys"):
		return "keys"
	case strings.HasPrefix(path, "/metrics/api-usage"):
		return "usage"
	case strings.HasPrefix(path, "/tasks"):
		return "tasks"
	}
	return "other"
}

// observeAttempt reports an attempt's outcome: its status, or "error" when none came back.
func (c *Client) observeAttempt(cl call, res response, e *Error) {
	if c.cfg.Observer == nil {
		return
	}
	status := res.status
	if e != nil {
		status = e.Status
	}
	code := "error"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	c.cfg.Observer.Request(opLabel(cl.path), code)
}

func (c *Client) observeRetry(cl call) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.Retry(opLabel(cl.path))
	}
}

func (c *Client) observeInFlight(delta int) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.InFlight(delta)
	}
}

func (c *Client) observeWait(d time.Duration) {
	if c.cfg.Observer != nil && c.admit.limiter != nil {
		c.cfg.Observer.RateLimitWait(d)
	}
}
