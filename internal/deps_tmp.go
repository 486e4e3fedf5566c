package internal

import (
	_ "github.com/cenkalti/backoff/v4"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/kelseyhightower/envconfig"
	_ "github.com/robfig/cron/v3"
	_ "go.uber.org/zap"
)
