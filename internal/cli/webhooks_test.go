package cli

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/usage-sync/usage-sync/internal/config"
)

// A signed completion webhook makes the daemon sync that user at once (not waiting for the
// schedule); the same delivery again charges nothing more.
func TestDaemonWebhookFastPath(t *testing.T) {
	t.Parallel()
	dsn, sim, base := simulated(t, 6, 2)
	users := sim.Users()
	var stderr output
	stop := daemon(t, env(dsn, func(c *config.Config) {
		c.UpstreamBaseURL = base
		c.UpstreamAdminToken = "adm"
		c.ChargeEnabled = true
		c.ChargeFrom = ref(time.Now().UTC().AddDate(0, 0, -3).Truncate(time.Second))
		c.SyncEnabled = true
		c.SyncSchedule = "0 0 1 1 *"
		c.WebhookAddr = "127.0.0.1:0"
		c.WebhookSecret = "hook-secret"
	}), &stderr)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	wait(t, stderr.when(`"event":"webhook.listening"`), "webhook.listening", &stderr)
	addr := regexp.MustCompile(`"event":"webhook.listening","addr":"([^"]+)"`).FindStringSubmatch(stderr.String())
	if addr == nil {
		t.Fatalf("no address in:\n%s", stderr.String())
	}
	body := `{"event_type":"email_verification_completed","task_id":"x","data":{"user_id":"` + users[0] + `","stats":{"total":1,"completed":1,"failed":0}}}`
	mac := hmac.New(sha256.New, []byte("hook-secret"))
	mac.Write([]byte(body))
	post := func() string {
		req, _ := http.NewRequest("POST", "http://"+addr[1]+"/webhooks/tasks", strings.NewReader(body))
		req.Header.Set("X-Webhook-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("webhook answered %d", resp.StatusCode)
		}
		return string(b)
	}
	count := func(sql string) int {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(context.Background(), sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	post()
	wait(t, stderr.when(`"event":"sync.cycle.done"`), "the webhook's cycle", &stderr)
	if n := count(`select count(*) from sync_state where status = 'ok' and user_id = '` + users[0] + `'`); n != 1 {
		t.Fatalf("the webhook's user was not synced")
	}
	if n := count(`select count(*) from sync_state where status = 'ok'`); n != 1 {
		t.Fatalf("%d users synced; the webhook should sync only its own", n)
	}
	rows := count(`select count(*) from credit_ledger`)
	if rows == 0 {
		t.Fatal("the webhook-triggered sync charged nothing")
	}
	// The same delivery again is acknowledged as already acted on: no sync, no charge.
	if got := post(); !strings.Contains(got, "duplicate") {
		t.Fatalf("a replayed webhook answered %q, want duplicate", got)
	}
	if again := count(`select count(*) from credit_ledger`); again != rows {
		t.Fatalf("a replayed webhook added %d ledger rows", again-rows)
	}
	if n := strings.Count(stderr.String(), `"event":"sync.cycle.done"`); n != 1 {
		t.Fatalf("%d cycles; a replayed delivery must not sync again", n)
	}
}
