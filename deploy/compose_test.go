package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/usage-sync/usage-sync/internal/simulator"
)

type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
}

type composeService struct {
	Image       string            `json:"image"`
	Build       *composeBuild     `json:"build"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	Volumes     []string          `json:"volumes"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck map[string]any `json:"healthcheck"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
	Target     string `json:"target"`
}

// loadCompose decodes compose.yaml strictly (an unknown field, e.g. an entrypoint or user
// override this test does not know, fails).
func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c
}

// compose.yaml is not run here (no compose runtime; the images it builds are run by
// image_test.go), so it is checked as far as it can be: its shape, the worker's variables, the
// files it mounts, the seeded users, and Prometheus's configuration through promtool.
func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	known := exampleEnv(t)
	for name, s := range c.Services {
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if _, err := os.Stat(src); err != nil {
				t.Errorf("%s mounts %s: %v", name, src, err)
			}
		}
		if s.Build == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s builds from %s: %v", name, s.Build.Dockerfile, err)
		}
		if s.Build.Target == "" { // the worker image
			for k := range s.Environment {
				if !known[k] {
					t.Errorf("%s sets %s, which config.example.env does not know", name, k)
				}
			}
		}
	}
	w := c.Services["usage-sync"]
	if w.Environment["METRICS_ADDR"] != ":9464" || len(w.Ports) == 0 || !strings.HasSuffix(w.Ports[0], ":9464:9464") {
		t.Errorf("the worker should serve and publish :9464: env %v, ports %v", w.Environment["METRICS_ADDR"], w.Ports)
	}
	// The seed inserts exactly the users the simulator service generates.
	sim := c.Services["upstream-sim"]
	if strings.Join(sim.Command, " ") != "-addr 0.0.0.0:8089 -seed 1 -users 3" {
		t.Fatalf("upstream-sim command %v: update compose-seed.sql and this check together", sim.Command)
	}
	seed, err := os.ReadFile("compose-seed.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range simulator.New(simulator.Config{Seed: 1, Users: 3}).Users() {
		if strings.Count(string(seed), u) != 2 {
			t.Errorf("compose-seed.sql should give simulator user %s a profile and a balance", u)
		}
	}

	// Prometheus's configuration, with the rule file where the container mounts it.
	tool := promtool(t)
	cfg, err := os.ReadFile("prometheus/compose-prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(rulesFile)
	tmp := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(string(cfg), "/etc/prometheus/alerts.yaml", abs)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "config", tmp).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}
