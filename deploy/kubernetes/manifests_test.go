// Package kubernetes_test validates the manifests beside it against the
// Kubernetes API types, strictly (a field the API does not have is an
// error, as kubectl's server-side validation makes it), and checks what
// countd needs of them. It is a test-only package, so the Kubernetes
// modules never reach countd's binary.
package kubernetes_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"countd/deploy/internal/countdbin"
)

// The values the manifests must agree with elsewhere: the image's user
// (Containerfile), countd's port, and the grace period's parts.
const (
	imageUser    = 65532
	port         = 8080
	portName     = "http" // the SRV name _http._tcp.<service> comes from it
	keySecret    = "countd-cluster-key"
	graceMargin  = 5 * time.Second // past preStop and -shutdown-timeout: a slow disk, a busy node
	dataDir      = "/data"
	shutdownFlag = "shutdown-timeout"
)

// manifests are the objects decoded from deploy/kubernetes/*.yaml.
type manifests struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
}

// kinds maps each kind the manifests may hold to its group-version and a
// constructor of its typed object.
var kinds = map[string]struct {
	gv  schema.GroupVersion
	new func(*manifests) any
}{
	"StatefulSet": {appsv1.SchemeGroupVersion, func(m *manifests) any {
		o := new(appsv1.StatefulSet)
		m.statefulSets = append(m.statefulSets, o)
		return o
	}},
	"Service": {corev1.SchemeGroupVersion, func(m *manifests) any {
		o := new(corev1.Service)
		m.services = append(m.services, o)
		return o
	}},
	"PodDisruptionBudget": {policyv1.SchemeGroupVersion, func(m *manifests) any {
		o := new(policyv1.PodDisruptionBudget)
		m.pdbs = append(m.pdbs, o)
		return o
	}},
}

// load decodes every YAML document of every .yaml file in dir strictly
// into its kind's type.
func load(t *testing.T, dir string) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	m := new(manifests)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(b) {
			where := fmt.Sprintf("%s, document %d", filepath.Base(file), i+1)
			if err := decode(m, doc); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	}
	return m
}

// decode reads one document's kind, then decodes it whole, strictly, into
// that kind's type.
func decode(m *manifests, doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	k, ok := kinds[tm.Kind]
	if !ok {
		return fmt.Errorf("kind %q is not one this test knows", tm.Kind)
	}
	if tm.APIVersion != k.gv.String() {
		return fmt.Errorf("%s has apiVersion %q, want %q", tm.Kind, tm.APIVersion, k.gv)
	}
	return yaml.UnmarshalStrict(doc, k.new(m))
}

// splitDocuments splits a YAML stream at its "---" lines, leaving out
// documents that hold only comments or blanks.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
		for line := range strings.Lines(doc) {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				docs = append(docs, []byte(doc))
				break
			}
		}
	}
	return docs
}

func TestManifests(t *testing.T) {
	m := load(t, ".")
	if len(m.statefulSets) != 1 || len(m.pdbs) != 1 || len(m.services) != 2 {
		t.Fatalf("want 1 StatefulSet, 2 Services and 1 PodDisruptionBudget; have %d, %d and %d",
			len(m.statefulSets), len(m.services), len(m.pdbs))
	}
	sts, pdb := m.statefulSets[0], m.pdbs[0]
	pod := sts.Spec.Template
	podLabels := labels.Set(pod.Labels)
	c := countdContainer(t, pod.Spec)

	t.Run("statefulset", func(t *testing.T) {
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
			t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
		}
		sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
		if err != nil || !sel.Matches(podLabels) {
			t.Errorf("the selector %v does not match the pod's labels %v (%v)", sts.Spec.Selector, pod.Labels, err)
		}
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			t.Fatalf("%d volume claim templates, want 1 (the data volume)", len(sts.Spec.VolumeClaimTemplates))
		}
		claim := sts.Spec.VolumeClaimTemplates[0]
		if mount := mountOf(c, claim.Name); mount == nil || mount.MountPath != dataDir || mount.ReadOnly {
			t.Errorf("the claim %q is not mounted writable at %s: %+v", claim.Name, dataDir, mount)
		}
		if v := envValue(c, countdbin.EnvName("data-dir")); v != "" && v != dataDir {
			t.Errorf("COUNTD_DATA_DIR=%q, but the volume is at %s", v, dataDir)
		}
		sc := pod.Spec.SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != imageUser || sc.FSGroup == nil || *sc.FSGroup != imageUser ||
			sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("pod security context %+v: want runAsNonRoot, runAsUser and fsGroup %d (the image's user, and a volume it may write)", sc, imageUser)
		}
	})

	t.Run("probes", func(t *testing.T) {
		if len(c.Ports) != 1 || c.Ports[0].Name != portName || c.Ports[0].ContainerPort != port {
			t.Errorf("container ports %+v, want one, %q on %d", c.Ports, portName, port)
		}
		for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("no %s probe by HTTP GET", name)
				continue
			}
			if p.HTTPGet.Path != "/health" || p.HTTPGet.Port.String() != portName {
				t.Errorf("%s probe gets %s on port %s, want /health on %s", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), portName)
			}
		}
		// Liveness must not kill a node that is only slow: it gets more
		// time than readiness, which only takes it out of the Service.
		if r, l := c.ReadinessProbe, c.LivenessProbe; r != nil && l != nil &&
			l.PeriodSeconds*l.FailureThreshold <= r.PeriodSeconds*r.FailureThreshold {
			t.Errorf("liveness fails after %ds, readiness after %ds: want liveness slower",
				l.PeriodSeconds*l.FailureThreshold, r.PeriodSeconds*r.FailureThreshold)
		}
	})

	t.Run("grace period", func(t *testing.T) {
		// SIGTERM comes after preStop; then the node drains, pushes to its
		// peers and leaves within -shutdown-timeout. The kubelet kills it
		// at the end of the grace period, so that needs a margin.
		shutdown := 5 * time.Second
		if v := envValue(c, countdbin.EnvName(shutdownFlag)); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("COUNTD_SHUTDOWN_TIMEOUT=%q: %v", v, err)
			}
			shutdown = d
		}
		var preStop time.Duration
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		need := preStop + shutdown + graceMargin
		g := pod.Spec.TerminationGracePeriodSeconds
		if g == nil || time.Duration(*g)*time.Second < need {
			t.Errorf("terminationGracePeriodSeconds %v, want at least %v (preStop %v + shutdown %v + margin %v)", g, need, preStop, shutdown, graceMargin)
		}
		if g != nil && time.Duration(*g)*time.Second > 4*need {
			t.Errorf("terminationGracePeriodSeconds %d holds a hung pod far longer than a leave takes (%v)", *g, need)
		}
	})

	t.Run("services", func(t *testing.T) {
		var headless, client *corev1.Service
		for _, s := range m.services {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
				t.Errorf("service %s selects %v, not the pods (%v)", s.Name, s.Spec.Selector, pod.Labels)
			}
			if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != portName || s.Spec.Ports[0].Port != port ||
				s.Spec.Ports[0].TargetPort.String() != portName {
				t.Errorf("service %s ports %+v, want one, %q: %d to the pod's %q", s.Name, s.Spec.Ports, portName, port, portName)
			}
			if s.Spec.ClusterIP == corev1.ClusterIPNone {
				headless = s
			} else {
				client = s
			}
		}
		if headless == nil || client == nil {
			t.Fatalf("want one headless service (clusterIP: None) and one client service")
		}
		if sts.Spec.ServiceName != headless.Name {
			t.Errorf("serviceName %q, want the headless service %q", sts.Spec.ServiceName, headless.Name)
		}
		if !headless.Spec.PublishNotReadyAddresses {
			t.Errorf("the headless service hides pods that are not ready: starting nodes would not find each other")
		}
		peers := envValue(c, countdbin.EnvName("peers"))
		want := fmt.Sprintf("dnssrv+_%s._tcp.%s.$(POD_NAMESPACE).svc.cluster.local", portName, headless.Name)
		if peers != want {
			t.Errorf("COUNTD_PEERS=%q, want %q: the SRV name of the headless service's port", peers, want)
		}
		if adv := envValue(c, countdbin.EnvName("advertise")); adv != fmt.Sprintf("$(POD_IP):%d", port) {
			t.Errorf("COUNTD_ADVERTISE=%q, want the pod's IP and port %d", adv, port)
		}
		if e := envVar(c, "POD_IP"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
			t.Errorf("POD_IP is not the downward API's status.podIP: %+v", e)
		}
	})

	t.Run("pdb", func(t *testing.T) {
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "1" || pdb.Spec.MinAvailable != nil {
			t.Errorf("maxUnavailable %v, minAvailable %v; want maxUnavailable 1 alone", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(podLabels) {
			t.Errorf("the PDB's selector %v does not match the pod's labels %v (%v)", pdb.Spec.Selector, pod.Labels, err)
		}
	})

	t.Run("cluster key", func(t *testing.T) {
		file := envValue(c, countdbin.EnvName("cluster-key-file"))
		if file == "" {
			t.Fatal("COUNTD_CLUSTER_KEY_FILE is not set: a node on 0.0.0.0 without a key exits 2")
		}
		var vol *corev1.Volume
		for i, v := range pod.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == keySecret {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			t.Fatalf("no volume of the Secret %s", keySecret)
		}
		mount := mountOf(c, vol.Name)
		if mount == nil || !mount.ReadOnly {
			t.Fatalf("the Secret's volume %q is not mounted read-only: %+v", vol.Name, mount)
		}
		rel, err := filepath.Rel(mount.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("COUNTD_CLUSTER_KEY_FILE=%s is not in the Secret's mount %s", file, mount.MountPath)
		}
		if items := vol.Secret.Items; len(items) > 0 && !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Path == rel }) {
			t.Errorf("the Secret's volume has no item at %s: %+v", rel, items)
		}
		if m := vol.Secret.DefaultMode; m == nil || *m&0o040 == 0 || *m&0o007 != 0 {
			t.Errorf("defaultMode %v: want readable by the group (fsGroup %d), not by others", m, imageUser)
		}
	})

	t.Run("flags", func(t *testing.T) {
		flags := countdbin.Flags(t, countdbin.Build(t, filepath.Join("..", ".."), t.TempDir()))
		defined := make(map[string]bool)
		for _, e := range c.Env {
			if f, ok := countdbin.FlagOfEnv(e.Name); ok && !flags[f] {
				t.Errorf("env %s names no flag of countd (-%s)", e.Name, f)
			}
			// Kubernetes expands $(VAR) only for variables defined above;
			// it leaves any other reference as it is, silently.
			for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(e.Value, -1) {
				if !defined[ref[1]] {
					t.Errorf("env %s refers to $(%s), which is not defined above it", e.Name, ref[1])
				}
			}
			defined[e.Name] = true
		}
		for _, arg := range slices.Concat(c.Command, c.Args) {
			name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			if !strings.HasPrefix(arg, "-") || !flags[name] {
				t.Errorf("argument %q is not a flag of countd", arg)
			}
		}
	})
}

// TestStrictDecodingRefusesUnknownFields shows the validation can fail: a
// misspelt field, one the API lacks in the wrong place, and a kind the
// test does not know are each refused.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	b, err := os.ReadFile("statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string][2]string{
		"misspelt field":  {"terminationGracePeriodSeconds:", "terminationGracePeriodSecond:"},
		"misplaced field": {"  replicas: 3\n", "  replicas: 3\n  clusterIP: None\n"},
		"unknown kind":    {"kind: StatefulSet", "kind: StatefullSet"},
		"wrong version":   {"apiVersion: apps/v1", "apiVersion: apps/v1beta1"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := bytes.Replace(b, []byte(edit[0]), []byte(edit[1]), 1)
			if bytes.Equal(bad, b) {
				t.Fatalf("%q is not in statefulset.yaml", edit[0])
			}
			if err := decode(new(manifests), bad); err == nil {
				t.Errorf("decoded with %q for %q", edit[1], edit[0])
			}
		})
	}
}

// countdContainer returns the pod's one container.
func countdContainer(t *testing.T, spec corev1.PodSpec) *corev1.Container {
	t.Helper()
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("want one container, countd; have %d and %d init containers", len(spec.Containers), len(spec.InitContainers))
	}
	return &spec.Containers[0]
}

func mountOf(c *corev1.Container, volume string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if m.Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i, e := range c.Env {
		if e.Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func envValue(c *corev1.Container, name string) string {
	if e := envVar(c, name); e != nil {
		return e.Value
	}
	return ""
}
