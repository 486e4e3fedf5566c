// Package clock is the one time source of the sync, in Go and in SQL alike.
package clock

import "time"

// Clock tells the time everything the sync decides is measured on. The zero Clock (nil) is
// production's: Now reads the host's clock, and NowOrNil is nil, so each statement's
// coalesce(@now, now()) falls back to the database's now(), the one clock every replica shares.
// A test gives a func that stands still or steps, and then Go and SQL both run on it
// (docs/design.md, "One clock").
type Clock func() time.Time

// Now is the time in Go: day windows, the settle lag, a task listing's bounds.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}

// NowOrNil is the value every statement that decides time takes as @now: nil in production (the
// database's now()), the test's time otherwise.
func (c Clock) NowOrNil() *time.Time {
	if c == nil {
		return nil
	}
	t := c()
	return &t
}
