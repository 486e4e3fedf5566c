package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/syncer"
	"github.com/usage-sync/usage-sync/internal/webhook"
)

// webhookQueueMax bounds the users waiting for a webhook-triggered sync; past it deliveries are
// dropped (logged) and the next scheduled cycle picks the users up.
const webhookQueueMax = 10000

// serveWebhooks listens on WEBHOOK_ADDR and syncs each webhook's user through the same
// RunCycle the schedule calls, one user at a time. The returned func stops both.
func (a *app) serveWebhooks(ctx context.Context, sy *syncer.Syncer) (stop func(), err error) {
	ln, err := net.Listen("tcp", a.cfg.WebhookAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for webhooks on WEBHOOK_ADDR %s: %w", a.cfg.WebhookAddr, err)
	}
	q := webhook.NewQueue(webhookQueueMax)
	mux := http.NewServeMux()
	mux.Handle(webhook.Path, webhook.New(a.cfg.WebhookSecret, q, a.log))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
	a.log.Info("webhook.listening", zap.String("addr", ln.Addr().String()), zap.String("path", webhook.Path),
		zap.Bool("signed", a.cfg.WebhookSecret != ""))

	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("webhook.serve_failed", zap.Error(err))
		}
	}()
	qctx, stopQueue := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		q.Run(qctx, func(ctx context.Context, user string) {
			if _, err := sy.RunCycle(ctx, syncer.CycleOptions{UserID: user, Trigger: "webhook"}); err != nil {
				a.log.Error("sync.cycle.failed", zap.String("user_id", user), zap.String("trigger", "webhook"), zap.Error(err))
			}
		})
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
		stopQueue()
		<-ran
	}, nil
}
