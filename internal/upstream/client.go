package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/usage-sync/usage-sync/internal/clock"
	"github.com/usage-sync/usage-sync/internal/logging"
)

// Config configures a Client. Zero fields take the …Default constants of defaults.go.
type Config struct {
	BaseURL string // ends in /api/v1, with or without a trailing slash
	// AdminToken, when set, is sent for every user with user_id=<uuid>.
	AdminToken string
	// JWTSecret, used when AdminToken is empty, signs a short-lived HS256 user JWT per user.
	JWTSecret      string
	JWTTTL         time.Duration
	RequestTimeout time.Duration // per attempt
	MaxElapsed     time.Duration // retry budget per call, waits included
	MaxRetryAfter  time.Duration // cap on an honoured Retry-After
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	HTTPClient     *http.Client // default: a client of its own with dial and TLS timeouts
	UserAgent      string
	Observer       Observer // nil: nothing observes requests (see observer.go)
	// AllowInsecure accepts an http:// BaseURL to a host other than this machine
	// (UPSTREAM_ALLOW_INSECURE); see CheckTransport.
	AllowInsecure bool
	// MaxInFlight bounds the attempts in flight at once through this client, retries included
	// (UPSTREAM_MAX_INFLIGHT, whose default internal/config resolves); 0: no bound.
	MaxInFlight int
	// RateLimit paces attempts to at most this many per second, retries included, spaced
	// evenly (UPSTREAM_RATE_LIMIT); 0: no limit.
	RateLimit float64
	// Logger is required: retries and dropped entries are logged to the logger the call's
	// context carries (logging.WithLogger, with the run and user fields), or to this one when
	// it carries none, so that no retry goes unlogged.
	Logger *zap.Logger
}

const (
	// idleConnsPerHost is the least number of idle connections kept to the upstream.
	idleConnsPerHost = 16
	// maxBody bounds a success body: a task detail with 10,000 jobs fits with room to spare.
	maxBody = 32 << 20
	// maxErrorBody bounds an error body: only its message is kept.
	maxErrorBody = 64 << 10
	// maxFields bounds the field reasons of a 400 kept in an error.
	maxFields = 8
)

// Client reads the Email Verification API on behalf of users. It is safe for concurrent use.
type Client struct {
	baseURL  string // scheme://host/path, no trailing slash
	basePath string
	cfg      Config
	http     *http.Client
	tokens   tokenSource
	admit    *admission
	// clock is the host's time source for JWT expiry, Retry-After dates and the rate limiter:
	// the zero clock.Clock in production, a test's own in tests.
	clock clock.Clock
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Logger == nil {
		return nil, errors.New("upstream client needs a logger (Config.Logger)")
	}
	u, err := ParseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if err := CheckTransport(u, cfg.AllowInsecure); err != nil {
		return nil, err
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")

	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"JWT TTL", &cfg.JWTTTL, JWTTTLDefault},
		{"request timeout", &cfg.RequestTimeout, TimeoutDefault},
		{"retry budget", &cfg.MaxElapsed, MaxElapsedDefault},
		{"Retry-After cap", &cfg.MaxRetryAfter, MaxRetryAfterDefault},
		{"initial backoff", &cfg.InitialBackoff, InitialBackoffDefault},
		{"max backoff", &cfg.MaxBackoff, MaxBackoffDefault},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return nil, fmt.Errorf("upstream %s is negative: %s", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.JWTTTL > JWTTTLMax {
		return nil, fmt.Errorf("upstream JWT TTL %s is above %s: a leaked token would stay good that long", cfg.JWTTTL, JWTTTLMax)
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.InitialBackoff)
	if cfg.UserAgent == "" {
		cfg.UserAgent = UserAgentDefault
	}

	c := &Client{
		baseURL:  u.String(),
		basePath: u.EscapedPath(),
		cfg:      cfg,
		http:     cfg.HTTPClient,
	}
	if c.http == nil {
		c.http = defaultHTTPClient(cfg.MaxInFlight)
	}
	c.http = noRedirects(c.http)
	if c.admit, err = newAdmission(cfg.MaxInFlight, cfg.RateLimit, c.now); err != nil {
		return nil, err
	}
	switch {
	case cfg.AdminToken != "":
		c.tokens = adminToken(cfg.AdminToken)
	case cfg.JWTSecret != "":
		c.tokens = newJWTMinter(cfg.JWTSecret, cfg.JWTTTL, c.now)
	default:
		return nil, errors.New("upstream needs an admin token or a JWT secret to authenticate")
	}
	return c, nil
}

// defaultHTTPClient is a client of our own, so nothing here depends on or changes
// http.DefaultClient. There is no overall timeout: each attempt's context carries one. It keeps
// as many idle connections as attempts may be in flight, so a round of requests reuses the
// connections of the round before rather than closing some and dialling anew.
func defaultHTTPClient(maxInFlight int) *http.Client {
	idle := max(idleConnsPerHost, maxInFlight)
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(64, idle),
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// now reads the client's clock when called, so a test that sets c.clock after New moves the
// limiter and the JWT minter too.
func (c *Client) now() time.Time { return c.clock.Now() }

// CloseIdleConnections closes the kept-alive connections to the upstream, for a run that ends
// while its process goes on (the daemon's in-process tests find no goroutine left).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// ListKeys lists the user's active keys. With from and to the totals are scoped to
// [from, to); with both nil they are lifetime totals.
func (c *Client) ListKeys(ctx context.Context, userID string, from, to *time.Time) (KeyList, error) {
	q := url.Values{}
	setTime(q, "from", from)
	setTime(q, "to", to)
	cl := call{op: "list keys", userID: userID, path: "/api-keys", query: q}
	list, err := fetch(ctx, c, cl, decodeKeyList)
	c.logDrops(ctx, cl, list.Drops)
	return list, err
}

// APIUsage reads the user's request totals per purpose, scoped like ListKeys.
func (c *Client) APIUsage(ctx context.Context, userID string, from, to *time.Time) (UsageMetrics, error) {
	q := url.Values{}
	setTime(q, "from", from)
	setTime(q, "to", to)
	return fetch(ctx, c, call{op: "read api usage", userID: userID, path: "/metrics/api-usage", query: q},
		func(b []byte) (UsageMetrics, error) {
			m, err := decodeUsage(b)
			if err != nil {
				return m, err
			}
			return ownUsage(m, userID)
		})
}

// ListTasks reads one page of the user's tasks. The order of the listing is not documented.
func (c *Client) ListTasks(ctx context.Context, userID string, tq TaskQuery) (TaskPage, error) {
	q := url.Values{}
	setTime(q, "created_after", tq.CreatedAfter)
	setTime(q, "created_before", tq.CreatedBefore)
	if tq.Limit > 0 {
		q.Set("limit", strconv.Itoa(tq.Limit))
	}
	if tq.Offset > 0 {
		q.Set("offset", strconv.Itoa(tq.Offset))
	}
	cl := call{op: "list tasks", userID: userID, path: "/tasks", query: q}
	page, err := fetch(ctx, c, cl, func(b []byte) (TaskPage, error) {
		p, err := decodeTaskPage(b)
		if err != nil {
			return p, err
		}
		return ownTasks(p, userID)
	})
	c.logDrops(ctx, cl, page.Drops)
	return page, err
}

// logDrops warns, once per reply, about the entries the worker could not use.
func (c *Client) logDrops(ctx context.Context, cl call, d Drops) {
	if d.Total() == 0 {
		return
	}
	logging.FromContext(ctx, c.cfg.Logger).Warn("upstream.entries.dropped", zap.String("op", cl.op), zap.Int("entries", d.Total()),
		zap.String("why", d.String()))
}

func setTime(q url.Values, key string, t *time.Time) {
	if t != nil {
		// Full precision: windows are half-open instants, and a truncated bound would move
		// requests from one window into another.
		q.Set(key, t.UTC().Format(time.RFC3339Nano))
	}
}

// call is one logical GET, retried as a unit.
type call struct {
	op     string
	userID string
	path   string // below the base path, escaped
	query  url.Values
}

type response struct {
	body     []byte
	status   int
	attempts int
}

func (c *Client) newError(cl call, kind Kind, msg string) *Error {
	return &Error{Op: cl.op, Path: c.basePath + cl.path, UserID: cl.userID, Kind: kind, Message: msg}
}

// fetch runs cl with retries and decodes the body. Decode errors are not retried: the same
// bytes would come back.
func fetch[T any](ctx context.Context, c *Client, cl call, decode func([]byte) (T, error)) (T, error) {
	var zero T
	res, err := c.get(ctx, cl)
	if err != nil {
		return zero, err
	}
	v, err := decode(res.body)
	if err != nil {
		e := c.newError(cl, KindDecode, err.Error())
		e.Status, e.Attempts = res.status, res.attempts
		var de *decodeError
		if errors.As(err, &de) {
			e.Err = de.err
		}
		return zero, e
	}
	return v, nil
}

func retryable(k Kind) bool { return k == KindRetryable || k == KindRateLimited }

// get performs cl until it succeeds, fails permanently, or the retry budget runs out.
func (c *Client) get(ctx context.Context, cl call) (response, error) {
	if strings.TrimSpace(cl.userID) == "" {
		return response{}, c.newError(cl, KindPermanent, "no user id")
	}
	token, err := c.tokens.token(cl.userID)
	if err != nil {
		e := c.newError(cl, KindAuth, "cannot mint a user token")
		e.Err = err
		return response{}, e
	}
	q := url.Values{}
	for k, v := range cl.query {
		q[k] = v
	}
	if c.tokens.admin() {
		q.Set("user_id", cl.userID)
	}
	target := c.baseURL + cl.path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}

	// A fresh ExponentialBackOff per call: it carries the call's start time and is not safe
	// to share between goroutines.
	bo := &retryBackOff{
		exp: backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(c.cfg.InitialBackoff),
			backoff.WithMaxInterval(c.cfg.MaxBackoff),
			backoff.WithMaxElapsedTime(c.cfg.MaxElapsed),
			backoff.WithRandomizationFactor(0.5),
		),
		maxRetryAfter: c.cfg.MaxRetryAfter,
	}
	var (
		attempts  int
		last      *Error
		lastAfter time.Duration
	)
	op := func() (response, error) {
		bo.retryAfter = 0
		release, waited, err := c.admit.admit(ctx)
		if err != nil {
			// Not an attempt: nothing was sent. The caller's context ended, or will before the
			// limiter lets the attempt go.
			last = c.newError(cl, KindRetryable, "")
			last.Err = err
			return response{}, backoff.Permanent(last)
		}
		c.observeWait(waited)
		attempts++
		c.observeInFlight(1)
		res, e := c.attempt(ctx, cl, target, token)
		c.observeInFlight(-1)
		// The slot is given back before the backoff sleeps: a waiting retry holds none.
		release()
		c.observeAttempt(cl, res, e)
		if e == nil {
			res.attempts = attempts
			return res, nil
		}
		last = e
		if e.RetryAfter > 0 {
			lastAfter, bo.retryAfter = e.RetryAfter, e.RetryAfter
		}
		if ctx.Err() != nil || !retryable(e.Kind) {
			return response{}, backoff.Permanent(e)
		}
		return response{}, e
	}
	notify := func(_ error, wait time.Duration) {
		c.observeRetry(cl)
		logging.FromContext(ctx, c.cfg.Logger).Warn("upstream.retry",
			zap.String("op", cl.op),
			zap.String("path", last.Path),
			zap.Int("status", last.Status),
			zap.Int("attempt", attempts),
			zap.Duration("wait", wait),
			zap.String("error", last.summary()),
		)
	}
	res, err := backoff.RetryNotifyWithData(op, backoff.WithContext(bo, ctx), notify)
	if err == nil {
		return res, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		// The caller gave up; say so rather than report the last upstream answer.
		e := c.newError(cl, KindRetryable, "")
		e.Err, e.Attempts, e.RetryAfter = cerr, attempts, lastAfter
		return response{}, e
	}
	if last == nil {
		return response{}, fmt.Errorf("%s for %s: %w", cl.op, cl.userID, err)
	}
	last.Attempts, last.RetryAfter = attempts, lastAfter
	return response{}, last
}

// summary is the error without its call context, for the retry log line.
func (e *Error) summary() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Status == 0 {
		return oneLine(msg)
	}
	s := fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	if msg != "" {
		s += ": " + oneLine(msg)
	}
	return s
}

// attempt performs one HTTP request.
func (c *Client) attempt(ctx context.Context, cl call, target, token string) (response, *Error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, target, nil)
	if err != nil {
		e := c.newError(cl, KindPermanent, "cannot build request")
		e.Err = stripURL(err)
		return response{}, e
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)

	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, c.transportError(ctx, actx, cl, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		body, tooLarge, err := readLimited(resp.Body, maxBody)
		if err != nil {
			return response{}, c.transportError(ctx, actx, cl, err)
		}
		if tooLarge {
			e := c.newError(cl, KindDecode, fmt.Sprintf("response body exceeds %d MiB", maxBody>>20))
			e.Status = resp.StatusCode
			return response{}, e
		}
		return response{body: body, status: resp.StatusCode}, nil
	}

	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Never followed (see noRedirects): permanent, and named.
		e := c.newError(cl, KindPermanent, redirectMessage(resp.Header.Get("Location"), token))
		e.Status = resp.StatusCode
		return response{}, e
	}
	// A partial error body still names the problem; a read error here changes nothing. What
	// the server says is cleaned before it is kept: it reaches sync_state, logs and terminals.
	body, _, _ := readLimited(resp.Body, maxErrorBody)
	msg, fields := kept(decodeErrorBody(body), token)
	e := c.newError(cl, kindOfStatus(resp.StatusCode), msg)
	e.Status, e.Fields = resp.StatusCode, fields
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
	}
	return response{}, e
}

// transportError classifies a failure to get or read a response.
func (c *Client) transportError(ctx, actx context.Context, cl call, err error) *Error {
	e := c.newError(cl, KindRetryable, "")
	switch {
	case ctx.Err() != nil:
		e.Err = ctx.Err()
	case actx.Err() != nil:
		e.Message = fmt.Sprintf("no complete response within %s", c.cfg.RequestTimeout)
		e.Err = actx.Err()
	default:
		e.Err = stripURL(err)
	}
	return e
}

// stripURL drops the *url.Error wrapper: its text repeats the full URL, query included.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact removes the bearer token from text the server sent, in case a proxy echoes
// request headers into its error page.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[redacted]")
}

// readLimited reads at most limit bytes of r; tooLarge reports that there was more.
func readLimited(r io.Reader, limit int64) (body []byte, tooLarge bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(body)) > limit {
		return body[:limit], true, err
	}
	return body, false, err
}

// retryAfterCeiling bounds what a Retry-After can say, in either form: a server's advice, not
// an order. The client waits at most Config.MaxRetryAfter within a call, and the syncer moves a
// user's next attempt at most FAILURE_BACKOFF_MAX; this ceiling only keeps the arithmetic sane
// (an HTTP date in 9999 is some 292 years, past what a time.Duration holds).
const retryAfterCeiling = 24 * time.Hour

// parseRetryAfter reads delay-seconds or an HTTP date, at most retryAfterCeiling; anything
// else, or a time in the past, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Compare before multiplying: the multiplication could overflow.
		return time.Duration(min(secs, int64(retryAfterCeiling/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		if t.After(now.Add(retryAfterCeiling)) {
			return retryAfterCeiling
		}
		return t.Sub(now)
	}
	return 0
}

// retryBackOff is the call's exponential backoff, stretched to honour a Retry-After.
type retryBackOff struct {
	exp           *backoff.ExponentialBackOff
	maxRetryAfter time.Duration
	retryAfter    time.Duration // the last attempt's Retry-After; 0 when none
}

func (b *retryBackOff) Reset() {
	b.exp.Reset()
	b.retryAfter = 0
}

// NextBackOff waits max(Retry-After capped, backoff interval), and gives up only when that
// wait would outlast the budget, so a rate limit is waited out while the budget allows.
func (b *retryBackOff) NextBackOff() time.Duration {
	next := b.exp.NextBackOff()
	if next == backoff.Stop || b.retryAfter <= 0 {
		return next
	}
	wait := max(min(b.retryAfter, b.maxRetryAfter), next)
	if b.exp.GetElapsedTime()+wait > b.exp.MaxElapsedTime {
		return backoff.Stop
	}
	return wait
}
