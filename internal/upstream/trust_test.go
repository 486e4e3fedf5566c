package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The token goes to the configured origin only: a redirect, even to the same host on another
// port, is not followed, in either auth mode, and names where it pointed. A client the caller
// supplies is not changed.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var leaked atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(other.Close)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(api.Close)
	own := &http.Client{}
	for name, cfg := range map[string]Config{
		"admin": {BaseURL: api.URL + "/api/v1", AdminToken: testAdmin, HTTPClient: own},
		"jwt":   {BaseURL: api.URL + "/api/v1", JWTSecret: testSecret, JWTTTL: time.Minute},
	} {
		cfg.Logger = zap.NewNop()
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ListKeys(context.Background(), "6f1d2c3b-0000-4000-8000-000000000001", nil, nil)
		if KindOf(err) != KindPermanent || !strings.Contains(err.Error(), "307 Temporary Redirect: redirect to "+other.URL+"/api/v1/api-keys") {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
	if own.CheckRedirect != nil {
		t.Fatal("New changed the caller's http.Client")
	}
}
