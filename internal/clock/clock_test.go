package clock_test

import (
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/clock"
)

// Production's clock passes no time into SQL, so every statement falls back to the database's
// now(); a test's clock passes its own, and Go reads the same.
func TestZeroClockDefersToTheDatabase(t *testing.T) {
	var prod clock.Clock
	if got := prod.NowOrNil(); got != nil {
		t.Fatalf("zero Clock's NowOrNil = %v; want nil, so SQL uses now()", got)
	}
	if d := time.Since(prod.Now()); d < 0 || d > time.Minute {
		t.Fatalf("zero Clock's Now is %v from the host's clock", d)
	}
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	fake := clock.Clock(func() time.Time { return at })
	if got := fake.NowOrNil(); got == nil || !got.Equal(at) || !fake.Now().Equal(at) {
		t.Fatalf("test Clock reads %v / %v; want %v in Go and SQL", fake.Now(), got, at)
	}
}
