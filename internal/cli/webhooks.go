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

// webhookPart listens on WEBHOOK_ADDR (bounded connections and timeouts) and syncs each
// webhook's user through RunTriggered, one user at a time: the trigger respects the user's
// failure backoff and TRIGGER_MIN_INTERVAL. A port already taken fails its start.
func (a *app) webhookPart(sy *syncer.Syncer) part {
	var ln net.Listener
	return part{
		name: "webhooks",
		start: func(context.Context) error {
			var err error
			if ln, err = webhook.Listen(a.cfg.WebhookAddr, webhook.MaxConnsDefault); err != nil {
				return fmt.Errorf("listen for webhooks on WEBHOOK_ADDR %s: %w", a.cfg.WebhookAddr, err)
			}
			a.log.Info("webhook.listening", zap.String("addr", ln.Addr().String()), zap.String("path", webhook.Path),
				zap.Bool("signed", a.cfg.WebhookSecret != ""), zap.Int("max_conns", webhook.MaxConnsDefault),
				zap.Int("max_body_bytes", webhook.MaxBodyDefault), zap.Duration("trigger_min_interval", a.cfg.TriggerMinInterval))
			return nil
		},
		run: func(ctx context.Context) error { return a.serveWebhooks(ctx, ln, sy) },
	}
}

// serveWebhooks serves deliveries on ln and runs their queue until ctx ends (or the server
// dies); then it stops taking deliveries (those in flight only queue, so they end quickly),
// stops the queue, whose sync in flight is abandoned, and returns once both have.
func (a *app) serveWebhooks(ctx context.Context, ln net.Listener, sy *syncer.Syncer) error {
	q := webhook.NewQueue(webhookQueueMax)
	mux := http.NewServeMux()
	mux.Handle(webhook.Path, webhook.New(a.cfg.WebhookSecret, q, a.st, a.log))
	srv := webhook.NewServer(mux, a.log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	qctx, stopQueue := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		q.Run(qctx, func(ctx context.Context, user string) {
			_, _, err := sy.RunTriggered(ctx, syncer.Trigger{UserID: user, Kind: "webhook"})
			switch {
			case errors.Is(err, syncer.ErrUnknownUser):
				// The handler checked the user; its profile went since. Nothing to sync.
				a.log.Debug("webhook.unknown_user", zap.String("user_id", user))
			case err != nil && ctx.Err() == nil:
				a.log.Error("sync.cycle.failed", zap.String("user_id", user), zap.String("trigger", "webhook"), zap.Error(err))
			}
		})
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err == nil {
		err = <-served
	}
	stopQueue()
	<-ran
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve webhooks on WEBHOOK_ADDR %s: %w", a.cfg.WebhookAddr, err)
}
