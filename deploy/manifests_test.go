// Package deploy checks the deployment files against the real Kubernetes API types and against
// the worker binary they run.
package deploy

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/usage-sync/usage-sync/internal/health"
)

// manifests holds every object of kubernetes.yaml, decoded strictly (an unknown or misspelt
// field fails) into its real API type.
type manifests struct {
	configMaps  []corev1.ConfigMap
	jobs        []batchv1.Job
	deployments []appsv1.Deployment
	cronJobs    []batchv1.CronJob
	pdbs        []policyv1.PodDisruptionBudget
}

func load(t *testing.T) manifests {
	t.Helper()
	raw, err := os.ReadFile("kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var target any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 ConfigMap":
			m.configMaps = append(m.configMaps, corev1.ConfigMap{})
			target = &m.configMaps[len(m.configMaps)-1]
		case "batch/v1 Job":
			m.jobs = append(m.jobs, batchv1.Job{})
			target = &m.jobs[len(m.jobs)-1]
		case "apps/v1 Deployment":
			m.deployments = append(m.deployments, appsv1.Deployment{})
			target = &m.deployments[len(m.deployments)-1]
		case "batch/v1 CronJob":
			m.cronJobs = append(m.cronJobs, batchv1.CronJob{})
			target = &m.cronJobs[len(m.cronJobs)-1]
		case "policy/v1 PodDisruptionBudget":
			m.pdbs = append(m.pdbs, policyv1.PodDisruptionBudget{})
			target = &m.pdbs[len(m.pdbs)-1]
		default:
			t.Fatalf("document %d: unexpected %s %s: teach this test its type", i, meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			t.Fatalf("document %d (%s): %v", i, meta.Kind, err)
		}
	}
	return m
}

// exampleEnv is every variable config.example.env names (the worker's loader is tested to
// match it).
func exampleEnv(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("../config.example.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			names[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("read only %d variables from config.example.env", len(names))
	}
	return names
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.configMaps) != 1 || len(m.jobs) != 1 || len(m.deployments) != 1 || len(m.cronJobs) != 1 || len(m.pdbs) != 1 {
		t.Fatalf("objects: %d ConfigMaps, %d Jobs, %d Deployments, %d CronJobs, %d PDBs", len(m.configMaps), len(m.jobs), len(m.deployments), len(m.cronJobs), len(m.pdbs))
	}
	if d := m.deployments[0]; d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Fatalf("the daemon should run two replicas by default (leases make that safe), got %v", d.Spec.Replicas)
	}
	if args := m.jobs[0].Spec.Template.Spec.Containers[0].Args; len(args) != 1 || args[0] != "migrate" {
		t.Fatalf("the Job should run migrate, runs %v", args)
	}
}

// The probes and the scrape target use the paths and the port the binary serves.
func TestProbesMatchTheBinary(t *testing.T) {
	m := load(t)
	d := m.deployments[0]
	c := d.Spec.Template.Spec.Containers[0]
	_, portText, err := net.SplitHostPort(health.AddrDefault)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.Atoi(portText)
	for _, e := range c.Env {
		if e.Name == "METRICS_ADDR" {
			t.Fatalf("METRICS_ADDR is set on the container (%q): the probes below assume the default", e.Value)
		}
	}
	for k := range m.configMaps[0].Data {
		if k == "METRICS_ADDR" {
			t.Fatal("METRICS_ADDR in the ConfigMap would make the CronJob's --once serve it too")
		}
	}
	var metricsPort int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	if int(metricsPort) != want {
		t.Fatalf("container port \"metrics\" = %d, the binary listens on %s", metricsPort, health.AddrDefault)
	}
	for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Fatalf("%s probe missing or not an HTTP GET", name)
		}
		if pr.HTTPGet.Port.String() != "metrics" && pr.HTTPGet.Port.IntValue() != want {
			t.Fatalf("%s probe port %s", name, pr.HTTPGet.Port.String())
		}
	}
	if p := c.LivenessProbe.HTTPGet.Path; p != health.LivePath {
		t.Fatalf("liveness path %s, binary serves %s", p, health.LivePath)
	}
	// The daemon waits for its database serving /livez 200 and /readyz 503: a startup or
	// liveness probe on /readyz would restart it into CrashLoopBackOff during an outage.
	if p := c.StartupProbe.HTTPGet.Path; p != health.LivePath {
		t.Fatalf("startup path %s, binary serves %s", p, health.LivePath)
	}
	if p := c.ReadinessProbe.HTTPGet.Path; p != health.ReadyPath {
		t.Fatalf("readiness path %s, binary serves %s", p, health.ReadyPath)
	}
	// A readiness timeout below the binary's own check bound would fail a slow but healthy database.
	if got := c.ReadinessProbe.TimeoutSeconds; int64(got) <= int64(health.ReadyTimeoutDefault.Seconds()) {
		t.Fatalf("readiness timeoutSeconds %d is not above the binary's %s", got, health.ReadyTimeoutDefault)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != portText || ann["prometheus.io/path"] != health.MetricsPath {
		t.Fatalf("scrape annotations %v", ann)
	}
	pdb := m.pdbs[0]
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Fatalf("the PodDisruptionBudget selects %s=%s, the daemon's pods do not carry it", k, v)
		}
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
		t.Fatalf("PodDisruptionBudget minAvailable %v with %d replicas would block drains or protect nothing", pdb.Spec.MinAvailable, *d.Spec.Replicas)
	}
}

// Every environment variable the manifests set is one the worker reads.
func TestManifestEnvNamesExist(t *testing.T) {
	m := load(t)
	known := exampleEnv(t)
	check := func(where, name string) {
		if !known[name] {
			t.Errorf("%s sets %s, which config.example.env (and so the worker) does not know", where, name)
		}
	}
	for k := range m.configMaps[0].Data {
		check("ConfigMap "+m.configMaps[0].Name, k)
	}
	pods := map[string]corev1.PodSpec{
		"Job " + m.jobs[0].Name:               m.jobs[0].Spec.Template.Spec,
		"Deployment " + m.deployments[0].Name: m.deployments[0].Spec.Template.Spec,
		"CronJob " + m.cronJobs[0].Name:       m.cronJobs[0].Spec.JobTemplate.Spec.Template.Spec,
	}
	for where, spec := range pods {
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				check(where, e.Name)
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					check(where+" (secret key)", e.ValueFrom.SecretKeyRef.Key)
				}
			}
		}
	}
}
