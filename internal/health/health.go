// Package health serves the daemon's probes and metrics: GET /livez, /readyz and /metrics.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// The probe paths and the default address, as the Kubernetes manifests use them.
const (
	LivePath    = "/livez"
	ReadyPath   = "/readyz"
	MetricsPath = "/metrics"
	// AddrDefault is METRICS_ADDR's default (the ops contract's), away from the webhook's 8080.
	AddrDefault = ":9464"
	// ReadyTimeoutDefault bounds one readiness check, so a database that hangs fails the probe
	// instead of stalling it; the manifests' timeoutSeconds is above it.
	ReadyTimeoutDefault = 3 * time.Second
)

// Checks are what the probes ask. Live reports whether the process's scheduler still runs;
// Ready whether the database answers with the schema the binary needs. A nil error is healthy;
// the error's text is the reason a failing probe gives in its body.
type Checks struct {
	Live  func() error
	Ready func(ctx context.Context) error
}

// Handler routes the three endpoints. reg may be nil (no /metrics); a nil check always passes.
func Handler(c Checks, reg *prometheus.Registry, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LivePath, func(w http.ResponseWriter, r *http.Request) {
		var err error
		if c.Live != nil {
			err = c.Live()
		}
		respond(w, err)
	})
	mux.HandleFunc("GET "+ReadyPath, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeoutDefault)
		defer cancel()
		var err error
		if c.Ready != nil {
			err = c.Ready(ctx)
		}
		respond(w, err)
	})
	if reg != nil {
		mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog:      zap.NewStdLog(log),
			ErrorHandling: promhttp.ContinueOnError,
			Registry:      reg, // promhttp_metric_handler_errors_total
		}))
	}
	return mux
}

// respond writes "ok", or 503 and the reason: a probe's body is what an operator reads first.
func respond(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Server is a started probe and metrics listener.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	served chan struct{}
	err    error // why serving stopped by itself; set before served is closed
}

// Listen binds addr and serves h until Close. Serving that stops by itself (the listener
// failed) closes Done, and Err says why: the owner reports it.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for probes and metrics on METRICS_ADDR %s: %w", addr, err)
	}
	s := &Server{
		srv:    &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute},
		ln:     ln,
		served: make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// Done is closed once the server has stopped serving: after Close, or by itself (Err).
func (s *Server) Done() <-chan struct{} { return s.served }

// Err is why the server stopped serving by itself, or nil; read it after Done.
func (s *Server) Err() error {
	select {
	case <-s.served:
		return s.err
	default:
		return nil
	}
}

// Addr is the address actually bound (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, lets in-flight requests finish (bounded) and waits for the server.
func (s *Server) Close(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(sctx)
	<-s.served
}
