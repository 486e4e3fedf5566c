// Command usage-sync syncs per-API-key usage and tasks from the Email Verification API into the
// dashboard's database and charges credits; see `usage-sync --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/usage-sync/usage-sync/internal/cli"
	"github.com/usage-sync/usage-sync/internal/config"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal lets the users in flight finish or be abandoned cleanly; a second
		// one means the operator will not wait.
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "usage-sync: second signal, exiting without waiting for the users in flight")
		os.Exit(130)
	}()

	err := cli.Run(ctx, os.Args[1:], config.Load, os.Stdout, os.Stderr)
	if err != nil && !cli.Reported(err) {
		fmt.Fprintf(os.Stderr, "usage-sync: %v\n", err)
	}
	os.Exit(cli.ExitCode(err))
}
