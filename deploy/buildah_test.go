package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What make image-test (scripts/image-test.sh) hands the image tests. Without IMAGE_TEST_IMAGE
// they skip: the image is built by make image-test, not by go test.
const (
	envImage    = "IMAGE_TEST_IMAGE"     // the worker image, e.g. localhost/usage-sync
	envSimImage = "IMAGE_TEST_SIM_IMAGE" // the upstream-sim target
	envVersion  = "IMAGE_TEST_VERSION"   // the VERSION build argument it was built with
	envStorage  = "BUILDAH_STORAGE_DRIVER"
)

// runBound bounds one command run in a container (migrate, --once): far above their seconds.
const runBound = 2 * time.Minute

// imageConfig is the part of an OCI image configuration (buildah inspect) the tests compare.
type imageConfig struct {
	User         string              `json:"User"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Env          []string            `json:"Env"`
	Entrypoint   []string            `json:"Entrypoint"`
	Cmd          []string            `json:"Cmd"`
	WorkingDir   string              `json:"WorkingDir"`
	Labels       map[string]string   `json:"Labels"`
}

type image struct {
	name   string
	config imageConfig
}

func buildah(ctx context.Context, args ...string) *exec.Cmd {
	driver := os.Getenv(envStorage)
	if driver == "" {
		driver = "vfs"
	}
	return exec.CommandContext(ctx, "buildah", append([]string{"--storage-driver", driver}, args...)...)
}

// imagesUnderTest returns the worker and simulator images make image-test built, or skips.
func imagesUnderTest(t *testing.T) (worker, sim image) {
	t.Helper()
	if os.Getenv(envImage) == "" || os.Getenv(envSimImage) == "" {
		t.Skipf("%s and %s unset: `make image-test` builds the images and runs this", envImage, envSimImage)
	}
	return inspect(t, os.Getenv(envImage)), inspect(t, os.Getenv(envSimImage))
}

func inspect(t *testing.T, name string) image {
	t.Helper()
	out, err := buildah(context.Background(), "inspect", "--type", "image", name).Output()
	if err != nil {
		t.Fatalf("buildah inspect %s: %v\n%s", name, err, stderrOf(err))
	}
	var doc struct {
		OCIv1 struct {
			Config imageConfig `json:"config"`
		} `json:"OCIv1"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("buildah inspect %s: %v\n%s", name, err, out)
	}
	return image{name: name, config: doc.OCIv1.Config}
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

// container is a buildah working container of an image, its root file system mounted at root
// (on the host) so the tests can read and fingerprint it. Commands run in it with chroot
// isolation on the host's network, as the image's user, with only the image's and the given
// environment.
type container struct {
	name, root string
	entrypoint []string
	readOnly   []string // paths the image's user could write, bind-mounted read-only in runs
}

func newContainer(t *testing.T, img image) *container {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	// scripts/image-test.sh removes the containers an interrupted run (a dead pid) left.
	name := fmt.Sprintf("usage-sync-image-test-%d-%s", os.Getpid(), hex.EncodeToString(b))
	if out, err := buildah(ctx, "from", "--pull=false", "--name", name, img.name).CombinedOutput(); err != nil {
		t.Fatalf("buildah from %s: %v\n%s", img.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := buildah(ctx, "rm", name).CombinedOutput(); err != nil {
			t.Logf("buildah rm %s: %v\n%s", name, err, out)
		}
	})
	out, err := buildah(ctx, "mount", name).Output()
	if err != nil {
		t.Fatalf("buildah mount %s: %v\n%s", name, err, stderrOf(err))
	}
	c := &container{name: name, root: strings.TrimSpace(string(out)), entrypoint: img.config.Entrypoint}
	uid, gid := c.ids(t, img.config.User)
	c.readOnly = c.writableBy(t, uid, gid)
	return c
}

// writableBy lists the paths of the root file system uid:gid may write (its home, /tmp). buildah
// run has no read-only root; mounting these read-only over themselves makes the root file system
// read-only for that (non-root) user, as readOnlyRootFilesystem does: a write fails with EROFS.
func (c *container) writableBy(t *testing.T, uid, gid int) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(c.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil || info.Mode()&fs.ModeSymlink != 0 {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		perm := info.Mode().Perm()
		if perm&0o002 != 0 || (int(st.Uid) == uid && perm&0o200 != 0) || (int(st.Gid) == gid && perm&0o020 != 0) {
			rel, _ := filepath.Rel(c.root, path)
			paths = append(paths, "/"+filepath.ToSlash(rel))
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", c.root, err)
	}
	return paths
}

// command runs the image's entry point with args, as a runtime does with a pod's args.
func (c *container) command(ctx context.Context, env map[string]string, args ...string) *exec.Cmd {
	a := []string{"run", "--isolation", "chroot"}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a = append(a, "--env", k+"="+env[k])
	}
	for _, p := range c.readOnly {
		a = append(a, "--volume", c.file(p)+":"+p+":ro")
	}
	a = append(a, c.name, "--")
	a = append(a, c.entrypoint...)
	return buildah(ctx, append(a, args...)...)
}

// run runs the entry point with args to its end and returns its exit code and output.
func (c *container) run(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runBound)
	defer cancel()
	cmd := c.command(ctx, env, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok || ctx.Err() != nil {
			t.Fatalf("%s %v: %v (bound %s)\n%s", c.name, args, err, runBound, out)
		}
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// file is a path inside the container's root file system, on the host.
func (c *container) file(path string) string { return filepath.Join(c.root, filepath.FromSlash(path)) }

// ids resolves an image's USER (uid[:gid] or names) through its own /etc/passwd and /etc/group,
// as a runtime does.
func (c *container) ids(t *testing.T, user string) (uid, gid int) {
	t.Helper()
	u, g, hasGroup := strings.Cut(user, ":")
	passwd := c.table(t, "/etc/passwd")
	uid, err := strconv.Atoi(u)
	if err != nil {
		row, ok := passwd[u]
		if !ok {
			t.Fatalf("USER %q: no user %q in the image's /etc/passwd", user, u)
		}
		uid, _ = strconv.Atoi(row[1])
	}
	if !hasGroup {
		for _, row := range passwd {
			if row[1] == strconv.Itoa(uid) {
				gid, _ = strconv.Atoi(row[2])
				return uid, gid
			}
		}
		t.Fatalf("USER %q without a group, and uid %d has no /etc/passwd entry for its primary group", user, uid)
	}
	gid, err = strconv.Atoi(g)
	if err != nil {
		row, ok := c.table(t, "/etc/group")[g]
		if !ok {
			t.Fatalf("USER %q: no group %q in the image's /etc/group", user, g)
		}
		gid, _ = strconv.Atoi(row[1])
	}
	return uid, gid
}

// table reads a colon-separated file (/etc/passwd, /etc/group) keyed by its first field.
func (c *container) table(t *testing.T, path string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(c.file(path))
	if err != nil {
		t.Fatalf("the image's %s: %v", path, err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Split(line, ":"); len(f) >= 3 {
			rows[f[0]] = f
		}
	}
	return rows
}

// runtimeMounts are what `buildah run` (like any runtime) creates in the root file system as
// mount points for its own files; they are not the image's writes.
var runtimeMounts = map[string]bool{
	"dev": true, "proc": true, "sys": true, "run": true,
	"etc/hosts": true, "etc/hostname": true, "etc/resolv.conf": true,
}

// fingerprint describes every entry of the root file system: type, mode and owner; for files
// also size, modification time and contents' hash; for links the target. (A directory's own
// modification time is left out: the runtime's mount points change /'s and /etc's.)
func (c *container) fingerprint(t *testing.T) map[string]string {
	t.Helper()
	fp := map[string]string{}
	err := filepath.WalkDir(c.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.root, path)
		rel = filepath.ToSlash(rel)
		if runtimeMounts[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d", info.Mode(), st.Uid, st.Gid)
		switch {
		case info.Mode().IsRegular():
			sum, err := hashFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d bytes mtime %d sha256 %s", info.Size(), info.ModTime().UnixNano(), sum)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		fp[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("fingerprint %s: %v", c.root, err)
	}
	return fp
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// diffFingerprints lists what was added, removed or changed between two fingerprints.
func diffFingerprints(before, after map[string]string) []string {
	var d []string
	for p, a := range after {
		if b, ok := before[p]; !ok {
			d = append(d, "added "+p+" ("+a+")")
		} else if a != b {
			d = append(d, "changed "+p+" ("+b+" -> "+a+")")
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			d = append(d, "removed "+p)
		}
	}
	sort.Strings(d)
	return d
}

// process finds the container's process running exe (a path in the image) among the
// descendants of pid (the `buildah run` that started it), as the host sees it.
func process(t *testing.T, pid int, exe string) int {
	t.Helper()
	p, err := findProcess(pid, exe)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func findProcess(pid int, exe string) (int, error) {
	children := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		if f := strings.Fields(string(rest)); len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], p)
		}
	}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && p != pid && strings.HasSuffix(link, exe) {
			return p, nil
		}
		queue = append(queue, children[p]...)
	}
	return 0, fmt.Errorf("no process running %s under buildah run (pid %d)", exe, pid)
}

// credentials returns a process's real, effective, saved and file-system uids and gids.
func credentials(t *testing.T, pid int) (uids, gids []string) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			uids = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "Gid:"); ok {
			gids = strings.Fields(v)
		}
	}
	return uids, gids
}
