package cli

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when any of its tests leaves a goroutine behind once all are done:
// every daemon, --once run and operator command closes its pools, servers and connections. The
// lifecycle tests check the same per test (noLeaks).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
