// Command upstream-sim serves the simulated Email Verification API for the demo and for
// manual runs of the worker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/logging"
	"github.com/usage-sync/usage-sync/internal/simulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "upstream-sim:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg simulator.Config
	addr := flag.String("addr", "127.0.0.1:8089", "listen address")
	flag.Int64Var(&cfg.Seed, "seed", 1, "seed of the generated data set")
	flag.IntVar(&cfg.Users, "users", 3, "generated users")
	flag.IntVar(&cfg.KeysPerUser, "keys", 3, "API keys per user")
	flag.IntVar(&cfg.TasksPerUser, "tasks", 5, "tasks per user")
	flag.IntVar(&cfg.HistoryDays, "days", 3, "days of generated history")
	flag.IntVar(&cfg.RequestsPerKeyPerDay, "requests-per-day", 40, "average requests per key per day")
	flag.StringVar(&cfg.AdminToken, "admin-token", envOr("SIM_ADMIN_TOKEN", "sim-admin-token"), "admin bearer token (env SIM_ADMIN_TOKEN)")
	flag.StringVar(&cfg.JWTSecret, "jwt-secret", os.Getenv("SIM_JWT_SECRET"), "HS256 secret of user JWTs (env SIM_JWT_SECRET)")
	flag.DurationVar(&cfg.Latency, "latency", 0, "added latency per request")
	flag.Float64Var(&cfg.ErrorRate, "error-rate", 0, "fraction of requests answered 500")
	flag.IntVar(&cfg.RateLimitEvery, "rate-limit-every", 0, "answer every Nth request with 429 (0 = never)")
	flag.DurationVar(&cfg.RetryAfter, "retry-after", time.Second, "Retry-After of the 429s")
	printUsers := flag.Bool("print-users", false, "print the user ids, one per line, and exit")
	refuse := flag.String("refuse", "", "comma-separated user ids answered 401 on every request (a user whose sync always fails)")
	flag.Parse()

	sim := simulator.New(cfg)
	for _, u := range strings.Split(*refuse, ",") {
		if u = strings.TrimSpace(u); u != "" {
			sim.SetFault(u, simulator.Fault{Status: http.StatusUnauthorized})
		}
	}
	if *printUsers {
		for _, id := range sim.Users() {
			fmt.Println(id)
		}
		return nil
	}

	log, err := logging.New(os.Stderr, logging.LevelDefault)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("sim.start", zap.String("addr", ln.Addr().String()), zap.Int64("seed", cfg.Seed), zap.Int("users", len(sim.Users())))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	log.Info("sim.stop")
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
