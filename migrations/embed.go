// Package migrations holds the worker's versioned schema, embedded into the binary.
//
// Files are named NNNN_name.sql and applied in order, each in its own transaction
// (see internal/store). Every statement must be safe to re-run against a database
// that already holds the dashboard's older tables.
package migrations

import "embed"

// FS holds the *.sql files of this directory.
//
//go:embed *.sql
var FS embed.FS
