// Package safetext makes text from an untrusted source safe to store in PostgreSQL, to log and to print on a terminal.
package safetext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxDefault bounds free text (an error message, a name) in bytes when the caller has no
	// tighter bound: enough for any honest message, small enough for a log line and a table cell.
	MaxDefault = 500
	// MaxIDDefault bounds an identifier in bytes. Upstream ids are UUIDs or short prefixed
	// tokens; a btree index entry must stay far below PostgreSQL's ~2.7 kB limit.
	MaxIDDefault = 200
)

// ellipsis marks text that was cut.
const ellipsis = "…"

// Clean returns s as one line of printable text of at most max bytes (max <= 0 means
// MaxDefault): invalid UTF-8 becomes U+FFFD; NUL, every other control character (so every
// terminal escape sequence loses its ESC), Unicode line separators and bidi overrides become
// spaces; runs of white space collapse to one space; the ends are trimmed; text longer than
// max is cut on a rune boundary and ends in "…". The result is safe for PostgreSQL text
// (which rejects NUL), for JSON logs and for a terminal.
func Clean(s string, max int) string {
	if max <= 0 {
		max = MaxDefault
	}
	if isClean(s) && len(s) <= max {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), max+len(ellipsis)))
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size <= 1 {
			r = utf8.RuneError // an invalid byte: shown as U+FFFD
		}
		if unsafeRune(r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		if b.Len() > max {
			break
		}
	}
	out := b.String()
	if len(out) <= max {
		return out
	}
	if max < len(ellipsis) {
		return cut(out, max)
	}
	return cut(out, max-len(ellipsis)) + ellipsis
}

// cut returns the longest prefix of s of at most n bytes that ends on a rune boundary.
func cut(s string, n int) string {
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.TrimRight(s[:n], " ")
}

// ID returns s trimmed when it is usable as an identifier: non-empty, at most MaxIDDefault
// bytes, valid UTF-8 and free of control, format and white-space characters other than a
// plain space. An unusable id is never repaired: two different bad ids could clean to one.
func ID(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > MaxIDDefault || !utf8.ValidString(s) {
		return "", false
	}
	for _, r := range s {
		if r != ' ' && (unsafeRune(r) || unicode.IsSpace(r)) {
			return "", false
		}
	}
	return s, true
}

// isClean reports whether Clean would return s unchanged (apart from its length).
func isClean(s string) bool {
	if !utf8.ValidString(s) || s != strings.TrimSpace(s) {
		return false
	}
	prevSpace := false
	for _, r := range s {
		if unsafeRune(r) {
			return false
		}
		sp := unicode.IsSpace(r)
		if sp && (r != ' ' || prevSpace) {
			return false
		}
		prevSpace = sp
	}
	return true
}

// unsafeRune reports runes that must not reach a terminal or a database verbatim: C0 and C1
// controls (NUL, ESC, CSI, ...), DEL, the Unicode line and paragraph separators, and the format
// characters that reorder or hide text (bidi overrides, zero-width joiners, BOM).
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// IsUUID reports whether s is a UUID in the canonical 8-4-4-4-12 hex form, as Postgres prints uuid
// values, in either case: a user id from the command line or from a webhook.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}
