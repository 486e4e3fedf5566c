package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"

	"github.com/usage-sync/usage-sync/internal/health"
	"github.com/usage-sync/usage-sync/internal/pgtest"
	"github.com/usage-sync/usage-sync/internal/simulator"
)

// The image tests run the images `make image-test` builds from deploy/Dockerfile (with
// buildah, chroot isolation: see scripts/image-test.sh), and hold kubernetes.yaml and
// compose.yaml to what those images are.

// stopBound is how long the daemon may take to end on SIGTERM (the Deployment gives it 60 s; the
// worker's own shutdown is well under this).
const stopBound = 10 * time.Second

// nonroot is distroless's non-root user and group, which the manifests' runAsUser name.
const nonroot = 65532

// waitBound bounds waiting for a started process's first log event.
const waitBound = time.Minute

// The manifests and compose.yaml run the images without overriding their entry point, user or
// working directory, as the user the image names, on the port it exposes; the migrate Job runs
// the same command as compose's migrate service. (TestImageRuns then runs those very commands.)
func TestImageMatchesManifests(t *testing.T) {
	worker, sim := imagesUnderTest(t)
	m := load(t)
	compose := loadCompose(t)
	w := newContainer(t, worker)
	s := newContainer(t, sim)

	for _, c := range []struct {
		img image
		ctr *container
		bin string
	}{{worker, w, "/usr/local/bin/usage-sync"}, {sim, s, "/usr/local/bin/upstream-sim"}} {
		if !reflect.DeepEqual(c.img.config.Entrypoint, []string{c.bin}) || len(c.img.config.Cmd) != 0 {
			t.Errorf("%s: entry point %q, cmd %q; the manifests pass only args to %s", c.img.name, c.img.config.Entrypoint, c.img.config.Cmd, c.bin)
		}
		if info, err := os.Stat(c.ctr.file(c.bin)); err != nil || info.Mode()&0o111 == 0 {
			t.Errorf("%s: entry point %s is not an executable in the image (%v)", c.img.name, c.bin, err)
		}
		if info, err := os.Stat(c.ctr.file(c.img.config.WorkingDir)); c.img.config.WorkingDir == "" || err != nil || !info.IsDir() {
			t.Errorf("%s: working directory %q is not a directory in the image (%v)", c.img.name, c.img.config.WorkingDir, err)
		}
	}

	uid, gid := w.ids(t, worker.config.User)
	if uid == 0 {
		t.Fatalf("%s runs as root (USER %q)", worker.name, worker.config.User)
	}
	if simUID, _ := s.ids(t, sim.config.User); simUID == 0 {
		t.Errorf("%s runs as root (USER %q)", sim.name, sim.config.User)
	}

	_, metricsPort, _ := net.SplitHostPort(health.AddrDefault)
	if want := map[string]struct{}{metricsPort + "/tcp": {}}; !reflect.DeepEqual(worker.config.ExposedPorts, want) {
		t.Errorf("%s exposes %v; the daemon serves %s (METRICS_ADDR's default)", worker.name, worker.config.ExposedPorts, health.AddrDefault)
	}

	pods := map[string]corev1.PodSpec{
		"Job " + m.jobs[0].Name:               m.jobs[0].Spec.Template.Spec,
		"Deployment " + m.deployments[0].Name: m.deployments[0].Spec.Template.Spec,
		"CronJob " + m.cronJobs[0].Name:       m.cronJobs[0].Spec.JobTemplate.Spec.Template.Spec,
	}
	for where, spec := range pods {
		sc := spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || sc.RunAsGroup == nil {
			t.Errorf("%s: securityContext should set runAsNonRoot, runAsUser and runAsGroup: %+v", where, sc)
		} else if *sc.RunAsUser != int64(uid) || *sc.RunAsGroup != int64(gid) {
			t.Errorf("%s runs as %d:%d, the image's USER %q is %d:%d", where, *sc.RunAsUser, *sc.RunAsGroup, worker.config.User, uid, gid)
		}
		for _, c := range spec.Containers {
			if len(c.Command) != 0 {
				t.Errorf("%s container %s overrides the entry point with %q", where, c.Name, c.Command)
			}
			if c.WorkingDir != "" && c.WorkingDir != worker.config.WorkingDir {
				t.Errorf("%s container %s works in %s, the image in %s", where, c.Name, c.WorkingDir, worker.config.WorkingDir)
			}
			if !strings.Contains(c.Image, "usage-sync") {
				t.Errorf("%s container %s runs image %s, not the worker's", where, c.Name, c.Image)
			}
			if csc := c.SecurityContext; csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
				t.Errorf("%s container %s: readOnlyRootFilesystem should be true (TestImageRuns checks the image writes nothing)", where, c.Name)
			} else if csc.RunAsUser != nil && *csc.RunAsUser != int64(uid) {
				t.Errorf("%s container %s runs as uid %d, the image as %d", where, c.Name, *csc.RunAsUser, uid)
			}
			for _, p := range c.Ports {
				if _, ok := worker.config.ExposedPorts[fmt.Sprintf("%d/%s", p.ContainerPort, strings.ToLower(string(p.Protocol)))]; !ok {
					t.Errorf("%s container %s declares port %d/%s, the image exposes %v", where, c.Name, p.ContainerPort, p.Protocol, worker.config.ExposedPorts)
				}
			}
		}
	}

	// compose.yaml: its decoder (loadCompose) knows no entrypoint, user or working_dir fields, so
	// an override fails there; what is left are the ports and the commands.
	cw := compose.Services["usage-sync"]
	for _, p := range cw.Ports {
		i := strings.LastIndex(p, ":")
		if _, ok := worker.config.ExposedPorts[p[i+1:]+"/tcp"]; !ok {
			t.Errorf("compose usage-sync publishes %s, the image exposes %v", p, worker.config.ExposedPorts)
		}
	}
	if _, port, _ := net.SplitHostPort(cw.Environment["METRICS_ADDR"]); port != metricsPort {
		t.Errorf("compose usage-sync serves METRICS_ADDR=%s, the image exposes %s", cw.Environment["METRICS_ADDR"], metricsPort)
	}
	jobArgs := m.jobs[0].Spec.Template.Spec.Containers[0].Args
	if cm := compose.Services["migrate"].Command; !reflect.DeepEqual(cm, jobArgs) || !reflect.DeepEqual(jobArgs, []string{"migrate"}) {
		t.Errorf("the migrate Job runs %q and compose's migrate %q: both should be [migrate]", jobArgs, cm)
	}
	cs := compose.Services["upstream-sim"]
	addr := ""
	for i, a := range cs.Command {
		if a == "-addr" && i+1 < len(cs.Command) {
			addr = cs.Command[i+1]
		}
	}
	_, simPort, _ := net.SplitHostPort(addr)
	if _, ok := sim.config.ExposedPorts[simPort+"/tcp"]; !ok || len(sim.config.ExposedPorts) != 1 {
		t.Errorf("compose upstream-sim listens on %q, its image exposes %v", addr, sim.config.ExposedPorts)
	}
	if u, err := url.Parse(cw.Environment["UPSTREAM_BASE_URL"]); err != nil || u.Hostname() != "upstream-sim" || u.Port() != simPort {
		t.Errorf("compose usage-sync reaches the simulator at %s, it listens on upstream-sim:%s", cw.Environment["UPSTREAM_BASE_URL"], simPort)
	}
}

// From the images, against a fresh database: the migrate Job's command, the CronJob's --once
// against the simulator's image (charges land as in make demo), and the daemon's probes,
// metrics and SIGTERM; each as the image's non-root user, with no shell in the image, writing
// nothing to its root file system.
func TestImageRuns(t *testing.T) {
	worker, sim := imagesUnderTest(t)
	m := load(t)
	if len(worker.config.Entrypoint) != 1 || len(sim.config.Entrypoint) != 1 {
		t.Fatalf("entry points %q and %q: want one binary each (TestImageMatchesManifests says more)", worker.config.Entrypoint, sim.config.Entrypoint)
	}
	w := newContainer(t, worker)
	before := w.fingerprint(t)
	t.Logf("mounted read-only in every run (the paths uid %s may write): %v", worker.config.User, w.readOnly)
	uid, gid := w.ids(t, worker.config.User)
	if uid != nonroot || gid != nonroot {
		t.Errorf("the image runs as %d:%d, want distroless's nonroot %d:%d", uid, gid, nonroot, nonroot)
	}

	t.Run("no shell", func(t *testing.T) { checkNoShell(t, w) })

	code, out := w.run(t, nil, "--version")
	t.Logf("$ usage-sync --version\n%s", out)
	if v := os.Getenv(envVersion); code != 0 || !strings.Contains(out, v) {
		t.Errorf("--version exited %d and printed %q, want version %q (the VERSION build argument)", code, out, v)
	}

	dsn := pgtest.EmptyDB(t, pgtest.Plain)
	db := pgtest.Pool(t, dsn)
	ctx := context.Background()
	jobArgs := m.jobs[0].Spec.Template.Spec.Containers[0].Args
	code, out = w.run(t, map[string]string{"DATABASE_URL": dsn}, jobArgs...)
	t.Logf("$ usage-sync %s   (the migrate Job's args)\n%s", strings.Join(jobArgs, " "), out)
	if code != 0 {
		t.Fatalf("migrate from the image exited %d", code)
	}
	var tables int
	if err := db.QueryRow(ctx, `select count(*) from pg_tables where schemaname = 'public'
		and tablename in ('profiles', 'user_credits', 'credit_ledger', 'sync_state', 'api_usage', 'api_keys', 'tasks')`).Scan(&tables); err != nil || tables != 7 {
		t.Fatalf("after migrate: %d of the 7 worker tables (%v)", tables, err)
	}

	// The demo's population: four simulated users, 20000 credits each and 50 for the last.
	const seed, users = 42, 4
	ids := simulator.New(simulator.Config{Seed: seed, Users: users}).Users()
	start := map[string]int64{}
	for i, id := range ids {
		start[id] = 20000
		if i == len(ids)-1 {
			start[id] = 50
		}
		if _, err := db.Exec(ctx, `insert into profiles (user_id, email, display_name) values ($1, $2, $2)`,
			id, fmt.Sprintf("user%d@image.test", i+1)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `insert into user_credits (user_id, credits_remaining) values ($1, $2)`, id, start[id]); err != nil {
			t.Fatal(err)
		}
	}

	s := newContainer(t, sim)
	simAddr := freeAddr(t)
	simBin := s.entrypoint[0]
	simProc := startLogged(t, s.command(ctx, nil, "-addr", simAddr, "-seed", strconv.Itoa(seed), "-users", strconv.Itoa(users)), simBin, "sim.start")
	checkCredentials(t, "upstream-sim", process(t, simProc.cmd.Process.Pid, simBin), uid, gid)
	env := map[string]string{
		"DATABASE_URL":         dsn,
		"UPSTREAM_BASE_URL":    "http://" + simAddr + "/api/v1",
		"UPSTREAM_ADMIN_TOKEN": "sim-admin-token",
		"LOG_LEVEL":            "info",
	}

	onceArgs := m.cronJobs[0].Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args
	onceEnv := maps.Clone(env)
	onceEnv["CHARGE_ENABLED"] = "true"
	onceEnv["CHARGE_FROM"] = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3).Format(time.RFC3339)
	code, out = w.run(t, onceEnv, onceArgs...)
	t.Logf("$ usage-sync %s   (the CronJob's args; CHARGE_FROM=%s)\n%s", strings.Join(onceArgs, " "), onceEnv["CHARGE_FROM"], out)
	if code != 0 {
		t.Fatalf("--once from the image exited %d:\n%s", code, out)
	}
	checkCharges(t, db, start)

	// The Deployment's container: no args. On the host's network, so on a free loopback port
	// rather than METRICS_ADDR's default.
	t.Run("daemon", func(t *testing.T) {
		metricsAddr := freeAddr(t)
		daemonEnv := maps.Clone(env)
		daemonEnv["METRICS_ADDR"] = metricsAddr
		daemonEnv["SYNC_ENABLED"] = "true"
		daemonEnv["SYNC_SCHEDULE"] = "@every 1h"
		d := startLogged(t, w.command(ctx, daemonEnv), w.entrypoint[0], "metrics.listening")
		pid := process(t, d.cmd.Process.Pid, w.entrypoint[0])
		checkCredentials(t, "the daemon", pid, uid, gid)
		for _, path := range []string{health.LivePath, health.ReadyPath, health.MetricsPath} {
			code, body := get(t, "http://"+metricsAddr+path)
			t.Logf("GET %s: %d %s", path, code, firstLine(body))
			if code != http.StatusOK {
				t.Errorf("GET %s: %d %s", path, code, body)
			}
			if path == health.MetricsPath && !strings.Contains(body, "usage_sync_") {
				t.Errorf("GET %s: no usage_sync_ metric in\n%s", path, body)
			}
		}
		// A runtime signals the container's process, not buildah: so does this test.
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		signalled := time.Now()
		select {
		case <-d.done:
			t.Logf("SIGTERM: exited %d after %s", d.cmd.ProcessState.ExitCode(), time.Since(signalled).Round(time.Millisecond))
		case <-time.After(stopBound):
			t.Fatalf("the daemon did not end within %s of SIGTERM:\n%s", stopBound, d.log())
		}
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("the daemon exited %d after SIGTERM, want 0:\n%s", code, d.log())
		}
		if !strings.Contains(d.log(), `"daemon.stopped"`) {
			t.Errorf("no daemon.stopped in the daemon's log:\n%s", d.log())
		}
	})

	if d := diffFingerprints(before, w.fingerprint(t)); len(d) > 0 {
		t.Errorf("the image's root file system changed while it ran (kubernetes.yaml mounts it read-only):\n%s", strings.Join(d, "\n"))
	}
}

// checkNoShell: no shell or multi-call binary anywhere, the entry point is the only executable,
// and `buildah run … /bin/sh` cannot start.
func checkNoShell(t *testing.T, w *container) {
	shells := map[string]bool{"sh": true, "bash": true, "dash": true, "ash": true, "zsh": true, "ksh": true, "busybox": true, "toybox": true}
	var executables []string
	err := filepath.WalkDir(w.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(w.root, path)
		if shells[d.Name()] {
			t.Errorf("the image holds a shell: /%s", rel)
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			executables = append(executables, "/"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(executables, w.entrypoint) {
		t.Errorf("executables in the image: %q, want only the entry point %q", executables, w.entrypoint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runBound)
	defer cancel()
	if out, err := buildah(ctx, "run", "--isolation", "chroot", w.name, "--", "/bin/sh", "-c", "exit 0").CombinedOutput(); err == nil {
		t.Errorf("/bin/sh ran in the image:\n%s", out)
	}
}

// checkCharges: as in make demo, every user is charged from its balance (start = remaining +
// debited), never below zero, and the 50-credit user down to its balance and no further.
func checkCharges(t *testing.T, db *pgxpool.Pool, start map[string]int64) {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		select c.user_id::text, c.credits_remaining, count(l.user_id), coalesce(sum(l.amount), 0), coalesce(sum(l.debited), 0)
		from user_credits c left join credit_ledger l using (user_id)
		group by c.user_id, c.credits_remaining`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var user string
		var remaining, n, amount, debited int64
		if err := rows.Scan(&user, &remaining, &n, &amount, &debited); err != nil {
			t.Fatal(err)
		}
		seen++
		t.Logf("user %s: %d ledger rows, amount %d, debited %d, %d of %d credits remaining", user, n, amount, debited, remaining, start[user])
		switch {
		case n == 0 || debited == 0:
			t.Errorf("user %s: no charge landed (%d ledger rows, %d debited)", user, n, debited)
		case remaining < 0 || remaining+debited != start[user]:
			t.Errorf("user %s: %d remaining + %d debited != %d at the start", user, remaining, debited, start[user])
		case start[user] == 50 && (amount <= 50 || remaining != 0):
			t.Errorf("user %s with 50 credits: amount %d, %d remaining; want more usage than credits, charged down to 0", user, amount, remaining)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(start) {
		t.Errorf("%d users in user_credits, seeded %d", seen, len(start))
	}
}

func checkCredentials(t *testing.T, what string, pid, uid, gid int) {
	t.Helper()
	uids, gids := credentials(t, pid)
	want := []string{strconv.Itoa(uid), strconv.Itoa(uid), strconv.Itoa(uid), strconv.Itoa(uid)}
	if !reflect.DeepEqual(uids, want) {
		t.Errorf("%s (pid %d) runs with uids %v, want %d (the image's USER)", what, pid, uids, uid)
	}
	want = []string{strconv.Itoa(gid), strconv.Itoa(gid), strconv.Itoa(gid), strconv.Itoa(gid)}
	if !reflect.DeepEqual(gids, want) {
		t.Errorf("%s (pid %d) runs with gids %v, want %d", what, pid, gids, gid)
	}
}

// logged is a process started from an image whose stderr (its JSON log) the test keeps.
type logged struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited (cmd.ProcessState is set)
	mu   sync.Mutex
	buf  strings.Builder
}

func (l *logged) log() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startLogged starts cmd (a `buildah run` of exe) and waits for the log event that says it
// serves. If still running when the test ends, exe is sent SIGTERM, then buildah (which kills
// its process; a SIGKILL to buildah would orphan it).
func startLogged(t *testing.T, cmd *exec.Cmd, exe, event string) *logged {
	t.Helper()
	l := &logged{cmd: cmd, done: make(chan struct{})}
	r, wr := io.Pipe()
	cmd.Stdout, cmd.Stderr = wr, wr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			l.mu.Lock()
			l.buf.WriteString(sc.Text() + "\n")
			l.mu.Unlock()
			if !signalled && strings.Contains(sc.Text(), `"event":"`+event+`"`) {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		_ = cmd.Wait()
		_ = wr.Close()
		close(l.done)
	}()
	t.Cleanup(func() {
		select {
		case <-l.done:
		default:
			if pid, err := findProcess(cmd.Process.Pid, exe); err == nil {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
			select {
			case <-l.done:
			case <-time.After(stopBound):
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-l.done
			}
		}
	})
	select {
	case <-ready:
	case <-l.done:
		t.Fatalf("%v exited (%v) before logging %s:\n%s", cmd.Args, cmd.ProcessState, event, l.log())
	case <-time.After(waitBound):
		t.Fatalf("%v logged no %s within %s:\n%s", cmd.Args, event, waitBound, l.log())
	}
	return l
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, string(body)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
