// Package logging builds the worker's zap JSON logger and carries a per-run, per-user logger in a context.
package logging

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a JSON logger writing to w at level ("debug", "info", "warn" or "error").
// The message key is "event": every line names what happened in a stable, dotted word
// ("sync.user.done"), and the rest of the line is fields.
func New(w io.Writer, level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL %q is not a level: set it to debug, info, warn or error", level)
	}
	enc := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		MessageKey:     "event",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     func(t time.Time, pe zapcore.PrimitiveArrayEncoder) { pe.AppendString(t.UTC().Format(time.RFC3339Nano)) },
		EncodeDuration: zapcore.MillisDurationEncoder,
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core), nil
}

type ctxKey struct{}

// WithLogger returns ctx carrying l, so code deep in a user's sync (the upstream client's retry
// loop, say) logs with the run_id and user_id its caller attached.
func WithLogger(ctx context.Context, l *zap.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext returns the logger WithLogger stored in ctx, or base when there is none. The
// caller names its own logger as base (there is no silent no-op): a context without WithLogger
// costs the line its run and user fields, never the line itself.
func FromContext(ctx context.Context, base *zap.Logger) *zap.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*zap.Logger); ok && l != nil {
		return l
	}
	return base
}
