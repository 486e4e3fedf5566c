// Package hostile is an upstream that misbehaves on purpose, for the worker's trust tests: it answers the requests a test picks and hands the rest to an honest upstream (the simulator).
package hostile

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
)

// Reply is what the hostile upstream answers instead of the honest one.
type Reply struct {
	Status int
	Header map[string]string
	Body   []byte
}

// Rule answers a request, or returns false to let the next rule (or the honest upstream) have it.
type Rule func(r *http.Request) (Reply, bool)

// Upstream serves the rules in the order they were added, then the honest handler. It records
// every request it saw, with the Authorization header, so a test can tell where a token went.
type Upstream struct {
	honest http.Handler

	mu    sync.Mutex
	rules []Rule
	seen  []Request
}

// Request is one request the upstream saw.
type Request struct {
	Path, UserID, Authorization string
	Query                       url.Values
}

// New wraps honest.
func New(honest http.Handler) *Upstream { return &Upstream{honest: honest} }

// On adds a rule.
func (u *Upstream) On(r Rule) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rules = append(u.rules, r)
}

// Requests returns what was seen so far.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.seen...)
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, Request{Path: r.URL.Path, UserID: r.URL.Query().Get("user_id"),
		Authorization: r.Header.Get("Authorization"), Query: r.URL.Query()})
	rules := append([]Rule(nil), u.rules...)
	u.mu.Unlock()
	for _, rule := range rules {
		if rep, ok := rule(r); ok {
			for k, v := range rep.Header {
				w.Header().Set(k, v)
			}
			if w.Header().Get("Content-Type") == "" {
				w.Header().Set("Content-Type", "application/json")
			}
			status := rep.Status
			if status == 0 {
				status = http.StatusOK
			}
			w.WriteHeader(status)
			_, _ = w.Write(rep.Body)
			return
		}
	}
	u.honest.ServeHTTP(w, r)
}

// For matches requests for user (user_id=) whose path ends in suffix ("" matches any path).
func For(user, suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return strings.EqualFold(r.URL.Query().Get("user_id"), user) && strings.HasSuffix(r.URL.Path, suffix)
	}
}

// Lifetime matches a listing without a window (no from=).
func Lifetime(r *http.Request) bool { return r.URL.Query().Get("from") == "" }

// Always answers every request match accepts with rep.
func Always(match func(*http.Request) bool, rep Reply) Rule {
	return func(r *http.Request) (Reply, bool) {
		if !match(r) {
			return Reply{}, false
		}
		return rep, true
	}
}

// AsUser answers a request for one user with what the honest upstream says about another,
// every mention of the other user's id replaced by the asked user's when relabel is true: a
// listing that carries another user's ids under the asked user's name.
func (u *Upstream) AsUser(match func(*http.Request) bool, asked, other string, relabel bool) Rule {
	return func(r *http.Request) (Reply, bool) {
		if !match(r) {
			return Reply{}, false
		}
		r2 := r.Clone(r.Context())
		q := r2.URL.Query()
		q.Set("user_id", other)
		r2.URL.RawQuery = q.Encode()
		rec := httptest.NewRecorder()
		u.honest.ServeHTTP(rec, r2)
		body := rec.Body.Bytes()
		if relabel {
			body = bytes.ReplaceAll(body, []byte(other), []byte(asked))
		}
		return Reply{Status: rec.Code, Body: body}, true
	}
}
