package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ParseBaseURL checks an API base URL (UPSTREAM_BASE_URL) and returns it parsed, its trailing
// slashes kept. It is the one check of the base URL: internal/config reports its error at
// start-up, and New refuses what it refuses. Errors name the variable and the fix, and never
// quote what could be a credential (userinfo, the query).
func ParseBaseURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("UPSTREAM_BASE_URL is empty: set it to the Email Verification API, e.g. https://api.example.com/api/v1")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		// The parse error quotes the URL, which may carry credentials.
		return nil, errors.New("UPSTREAM_BASE_URL is not a valid URL: set it to e.g. https://api.example.com/api/v1")
	case u.User != nil:
		return nil, errors.New("UPSTREAM_BASE_URL carries credentials before its host: remove them and put the token in UPSTREAM_ADMIN_TOKEN")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("UPSTREAM_BASE_URL %q is not an absolute http(s) URL: use e.g. https://api.example.com/api/v1", raw)
	case u.RawQuery != "" || u.Fragment != "":
		// The query is not shown: it is where a misplaced token would sit.
		return nil, fmt.Errorf("UPSTREAM_BASE_URL %s://%s%s has a query or fragment: give only scheme, host and path, e.g. https://api.example.com/api/v1", u.Scheme, u.Host, u.Path)
	}
	return u, nil
}

// LoopbackHost reports whether host (without its port) is this machine: localhost or a
// loopback address. Only there may the admin token and user JWTs travel in cleartext.
func LoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrInsecureBaseURL is a plain-http base URL to a host other than this machine.
var ErrInsecureBaseURL = errors.New("UPSTREAM_BASE_URL is http:// to a host other than this machine")

// CheckTransport refuses a base URL that would send the token in cleartext over a network:
// http:// is accepted only to a loopback host, or when allowInsecure (UPSTREAM_ALLOW_INSECURE)
// says the network is trusted; the caller then warns.
func CheckTransport(u *url.URL, allowInsecure bool) error {
	if u.Scheme == "https" || LoopbackHost(u.Hostname()) || allowInsecure {
		return nil
	}
	return fmt.Errorf("%w (%s://%s): the admin token and user tokens would cross the network in cleartext; use https://%s, or set UPSTREAM_ALLOW_INSECURE=true if the network between the worker and the API is trusted",
		ErrInsecureBaseURL, u.Scheme, u.Host, u.Host+u.Path)
}
