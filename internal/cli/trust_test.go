package cli

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usage-sync/usage-sync/internal/config"
	"github.com/usage-sync/usage-sync/internal/pgtest"
)

// Findings 5 and 7, as an operator meets them: each is a configuration error naming the fix,
// reported before anything starts.
func TestTrustConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  Load
		want string
	}{
		{"webhook off loopback without a secret", env(closedDB, func(c *config.Config) {
			c.SyncEnabled = true
			c.WebhookAddr = ":8080"
		}),
			"set WEBHOOK_SECRET to the secret the upstream signs webhooks with, or listen on loopback only (e.g. WEBHOOK_ADDR=127.0.0.1:8080)"},
		{"cleartext base URL", env(closedDB, func(c *config.Config) {
			c.UpstreamBaseURL = "http://api.example.com/api/v1"
		}),
			"use https://api.example.com/api/v1, or set UPSTREAM_ALLOW_INSECURE=true"},
		{"JWT TTL of an hour", env(closedDB, func(c *config.Config) {
			c.UpstreamAdminToken = ""
			c.SupabaseJWTSecret = "jwt"
			c.UpstreamJWTTTL = time.Hour
		}),
			"UPSTREAM_JWT_TTL 1h0m0s is above 15m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tt.env, "--once")
			if r.code != ExitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, want %d with %q; stderr:\n%s", r.code, ExitUsage, tt.want, r.stderr)
			}
		})
	}
}

// UPSTREAM_ALLOW_INSECURE=true accepts a cleartext base URL, and says so in the log.
func TestInsecureUpstreamWarns(t *testing.T) {
	t.Parallel()
	dsn := pgtest.MigratedDB(t, pgtest.Plain)
	r := run(t, env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = "http://api.example.com/api/v1"
		c.UpstreamAllowInsecure = true
	}), "--once")
	if r.code != 0 {
		t.Fatalf("exit %d (%v); stderr:\n%s", r.code, r.err, r.stderr)
	}
	if !regexp.MustCompile(`"level":"warn".*"event":"config.insecure_upstream".*cleartext`).MatchString(r.stderr) {
		t.Fatalf("no config.insecure_upstream warning:\n%s", r.stderr)
	}
}

// Finding 7: a key=value DATABASE_URL whose password holds a backslash-escaped space logs no
// part of the password in config.loaded (before, "cr3tTAIL" showed), nor anywhere else.
func TestEscapedPasswordNeverLogged(t *testing.T) {
	t.Parallel()
	dsn := `host=127.0.0.1 port=1 user=app password=se\ cr3tTAIL dbname=app sslmode=disable connect_timeout=5`
	r := run(t, env(dsn), "--once")
	if r.code != ExitRuntime || !strings.Contains(r.stderr, `"event":"config.loaded"`) {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	for _, s := range []string{r.stderr, r.stdout, r.err.Error()} {
		if strings.Contains(s, "cr3tTAIL") || strings.Contains(s, `se\ `) {
			t.Fatalf("the password shows:\n%s", s)
		}
	}
	if !strings.Contains(r.stderr, `"DATABASE_URL":"host=127.0.0.1 port=1 user=app password=xxxxx dbname=app`) {
		t.Fatalf("config.loaded should show the DSN with its password masked:\n%s", r.stderr)
	}
}

// Finding 5: 50 connections each sending an 8 MiB body (all but its last byte, then holding)
// keep the daemon's heap under 100 MiB, and a real delivery is still served meanwhile. Before,
// every body was read whole before the signature was checked: 48 such connections took the
// daemon from 21 MB to 444 MB. Not parallel: the heap it reads is the test process's.
func TestWebhookHeldBodiesBoundMemory(t *testing.T) {
	dsn, sim, base := simulated(t, 1, 1)
	var stderr output
	stop := daemon(t, env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = base
		c.UpstreamAdminToken = "adm"
		c.SyncEnabled = true
		c.SyncSchedule = "0 0 1 1 *"
		c.WebhookAddr = "127.0.0.1:0"
		c.WebhookSecret = "hook-secret"
		c.LogLevel = "info"
	}), &stderr)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	wait(t, stderr.when(`"event":"webhook.listening"`), "webhook.listening", &stderr)
	addr := regexp.MustCompile(`"event":"webhook.listening","addr":"([^"]+)"`).FindStringSubmatch(stderr.String())[1]
	resetPeakRSS(t)

	const conns, bodySize = 50, 8 << 20
	chunk := make([]byte, 1<<20)
	var held sync.WaitGroup
	var cutOff sync.Map // conn → the server closed it (or answered) before the body ended
	release := make(chan struct{})
	var closed sync.WaitGroup
	for i := range conns {
		held.Add(1)
		closed.Add(1)
		go func() {
			defer closed.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				held.Done()
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /webhooks/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Webhook-Signature: sha256=00\r\nContent-Length: %d\r\n\r\n", bodySize)
			for sent := 0; sent < bodySize-1; {
				n, err := c.Write(chunk[:min(len(chunk), bodySize-1-sent)])
				sent += n
				if err != nil {
					cutOff.Store(i, true)
					break
				}
			}
			held.Done()
			<-release
		}()
	}
	held.Wait()

	body := `{"event_type":"email_verification_completed","task_id":"real","data":{"user_id":"` + sim.Users()[0] + `","stats":{"total":1,"completed":1,"failed":0}}}`
	mac := hmac.New(sha256.New, []byte("hook-secret"))
	mac.Write([]byte(body))
	req, _ := http.NewRequest("POST", "http://"+addr+"/webhooks/tasks", strings.NewReader(body))
	req.Header.Set("X-Webhook-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(got), "queued") {
		t.Fatalf("the real delivery beside 50 held connections: %d %s", resp.StatusCode, got)
	}
	wait(t, stderr.when(`"event":"sync.user.done"`), "the real delivery's sync", &stderr)

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap := ms.HeapInuse
	close(release)
	closed.Wait()
	n := 0
	cutOff.Range(func(any, any) bool { n++; return true })
	t.Logf("%d connections × %d MiB bodies (%d cut off by the server): heap in use %.1f MiB, peak RSS of the test process %s",
		conns, bodySize>>20, n, float64(heap)/(1<<20), peakRSS(t))
	if heap > 100<<20 {
		t.Fatalf("heap in use %.1f MiB with %d held bodies, want under 100 MiB", float64(heap)/(1<<20), conns)
	}
}

// resetPeakRSS resets the kernel's peak resident set (VmHWM) of this process, so peakRSS reads
// the peak since; where that is not allowed peakRSS reports the process's lifetime peak.
func resetPeakRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset VmHWM: %v", err)
	}
}

func peakRSS(t *testing.T) string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "unknown"
}
