package store

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// A database URL carries its password: these are the one place that hides it, in what the
// worker logs (RedactDSN), names (Describe) and passes on from pgx (redactErr).

// RedactDSN masks the password of a DATABASE_URL in each form the driver (pgx) accepts: a
// postgres:// URL, multiple hosts included (its userinfo password and any password query
// parameter), or a key=value DSN, tokenised as pgx tokenises it (quoted values, backslash
// escapes such as password=se\ cr3t). The driver's own reading has the last word: if the
// password it parses still shows in the result, only Describe's user@host/db is shown.
func RedactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	var out string
	var ok bool
	if isURLDSN(dsn) {
		out, ok = redactURLDSN(dsn), true
	} else {
		out, ok = redactKeywordValueDSN(dsn)
	}
	if !ok {
		return "(unparsable DATABASE_URL)"
	}
	for _, secret := range passwords(dsn) {
		if secret != "" && strings.Contains(out, secret) {
			return Describe(dsn) + " (rest hidden: it would show the password)"
		}
	}
	return out
}

// redactMask replaces a password in what is shown.
const redactMask = "xxxxx"

// isURLDSN says which redaction a DSN takes: pgx reads postgres:// and postgresql:// as URLs;
// any other scheme:// is shown as a URL too, for the error that names its wrong scheme.
func isURLDSN(dsn string) bool {
	i := strings.Index(dsn, "://")
	return i > 0 && !strings.ContainsAny(dsn[:i], "= \t\n\r\v\f")
}

// redactURLDSN masks a URL's userinfo password (what follows the first ':' of the text before
// the first '@', when that comes before any '/', as pgx reads it) and the value of every query
// parameter whose decoded name mentions a password. It works on the text, not url.Parse, which
// refuses the multi-host URLs pgx accepts.
func redactURLDSN(dsn string) string {
	var b strings.Builder
	scheme, rest, _ := strings.Cut(dsn, "://")
	b.WriteString(scheme + "://")
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		user, _, hasPassword := strings.Cut(rest[:i], ":")
		b.WriteString(user)
		if hasPassword {
			b.WriteString(":" + redactMask)
		}
		b.WriteByte('@')
		rest = rest[i+1:]
	}
	hostPath, query, hasQuery := strings.Cut(rest, "?")
	b.WriteString(hostPath)
	if !hasQuery {
		return b.String()
	}
	b.WriteByte('?')
	for i, kv := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		k, _, hasValue := strings.Cut(kv, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if hasValue && strings.Contains(strings.ToLower(name), "password") {
			kv = k + "=" + redactMask
		}
		b.WriteString(kv)
	}
	return b.String()
}

// kvSpace is what separates key=value pairs, as pgx reads them.
const kvSpace = " \t\n\r\v\f"

// redactKeywordValueDSN masks the value of every key mentioning a password in a key=value DSN,
// walking it as pgx's parseKeywordValueSettings does: an unquoted value runs to the next
// unescaped space (a backslash escapes the byte after it), a quoted one to the next unescaped
// quote. The rest of the text is kept as written. ok is false for what pgx would not parse.
func redactKeywordValueDSN(dsn string) (string, bool) {
	var b strings.Builder
	s := dsn
	for {
		trimmed := strings.TrimLeft(s, kvSpace)
		b.WriteString(s[:len(s)-len(trimmed)])
		s = trimmed
		if s == "" {
			return b.String(), true
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return "", false
		}
		key := strings.Trim(s[:eq], kvSpace)
		b.WriteString(s[:eq+1])
		s = s[eq+1:]
		trimmed = strings.TrimLeft(s, kvSpace)
		b.WriteString(s[:len(s)-len(trimmed)])
		s = trimmed
		end := 0
		switch {
		case s == "":
		case s[0] != '\'':
			for ; end < len(s) && !strings.ContainsRune(kvSpace, rune(s[end])); end++ {
				if s[end] == '\\' {
					end++
				}
			}
			end = min(end, len(s))
		default:
			end = 1
			for ; end < len(s) && s[end] != '\''; end++ {
				if s[end] == '\\' {
					end++
				}
			}
			if end >= len(s) {
				return "", false // unterminated quote
			}
			end++ // the closing quote
		}
		if strings.Contains(strings.ToLower(key), "password") {
			b.WriteString(redactMask)
		} else {
			b.WriteString(s[:end])
		}
		s = s[end:]
	}
}

// Describe names a database for messages: user@host:port/db (every host of a multi-host DSN),
// never the password.
func Describe(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "(unparsable DATABASE_URL)"
	}
	hosts := []string{fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)}
	for _, f := range cfg.Fallbacks {
		if h := fmt.Sprintf("%s:%d", f.Host, f.Port); h != hosts[len(hosts)-1] {
			hosts = append(hosts, h)
		}
	}
	return fmt.Sprintf("%s@%s/%s", cfg.User, strings.Join(hosts, ","), cfg.Database)
}

// redactErr renders err with any password from dsn blanked out; pgx errors can quote the DSN.
func redactErr(err error, dsn string) string {
	msg := err.Error()
	for _, secret := range passwords(dsn) {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
		}
	}
	return msg
}

func passwords(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	// The driver's reading, in every form it accepts, and that value as it may be written.
	if cfg, err := pgconn.ParseConfig(dsn); err == nil && cfg.Password != "" {
		p := cfg.Password
		out = append(out, p, url.QueryEscape(p), url.PathEscape(p),
			strings.NewReplacer(`\`, `\\`, `'`, `\'`, " ", `\ `).Replace(p))
	}
	return out
}
