package charttest

// Rendering helpers: run `helm template` on the chart and parse what it prints.

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "../parkme"
	releaseName = "pm"
)

// valuesFile names one of the chart's ci/ values files as helm arguments.
func valuesFile(name string) []string {
	return []string{"-f", filepath.Join(chartDir, "ci", name)}
}

var (
	helmOnce sync.Once
	helmPath string
)

// helm finds the helm binary: $HELM, then PATH, then $(go env GOPATH)/bin.
// A missing helm fails the test run: these promises are never skipped.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		if p := os.Getenv("HELM"); p != "" {
			helmPath = p
			return
		}
		if p, err := exec.LookPath("helm"); err == nil {
			helmPath = p
			return
		}
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			return
		}
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			helmPath = p
		}
	})
	if helmPath == "" {
		t.Fatal("helm not found: set HELM, put helm on PATH, or run helm/test.sh (it installs helm)")
	}
	return helmPath
}

// renderErr runs `helm template` and returns its combined output.
func renderErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return renderChartErr(t, chartDir, args...)
}

func renderChartErr(t *testing.T, chart string, args ...string) (string, error) {
	t.Helper()
	cmdArgs := append([]string{"template", releaseName, chart, "--namespace", "parking"}, args...)
	cmd := exec.Command(helm(t), cmdArgs...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stderr.String(), err
	}
	return stdout.String(), nil
}

// renderNotes renders templates/NOTES.txt. `helm template` drops the NOTES and
// `helm install --dry-run=client` still dials a cluster (helm/helm#13144), so
// this renders a copy of the chart in which one extra template runs NOTES.txt
// through `tpl` (the same functions and named templates) into a ConfigMap.
func renderNotes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "parkme")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	shim := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-under-test\n" +
		"data:\n  notes: {{ tpl (.Files.Get \"notes-under-test.txt\") . | toJson }}\n"
	for name, text := range map[string][]byte{"notes-under-test.txt": notes, "templates/zz-notes-under-test.yaml": []byte(shim)} {
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := renderChartErr(t, dir, append(args, "--show-only", "templates/zz-notes-under-test.yaml")...)
	if err != nil {
		t.Fatalf("rendering NOTES.txt with %v failed: %v\n%s", args, err, out)
	}
	var cm configMap
	if err := yaml.Unmarshal([]byte(out), &cm); err != nil {
		t.Fatalf("rendered NOTES do not parse: %v\n%s", err, out)
	}
	return cm.Data["notes"]
}

// doc is one rendered manifest: its kind, name and labels, plus the JSON to
// decode it further.
type doc struct {
	Kind     string
	Metadata objectMeta
	json     []byte
	text     string
}

type objectMeta struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

type manifests []doc

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// render runs `helm template` with args and fails the test if helm fails.
func render(t *testing.T, args ...string) manifests {
	t.Helper()
	out, err := renderErr(t, args...)
	if err != nil {
		t.Fatalf("helm template %v failed: %v\n%s", args, err, out)
	}
	var docs manifests
	for _, text := range docSeparator.Split(out, -1) {
		asJSON, err := yaml.YAMLToJSON([]byte(text))
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, text)
		}
		if string(asJSON) == "null" {
			continue // only comments
		}
		d := doc{json: asJSON, text: text}
		if err := json.Unmarshal(asJSON, &d); err != nil {
			t.Fatalf("rendered manifest is not an object: %v\n%s", err, text)
		}
		if d.Kind == "" || d.Metadata.Name == "" {
			t.Fatalf("rendered manifest has no kind or name:\n%s", text)
		}
		docs = append(docs, d)
	}
	return docs
}

// ofKind returns every manifest of one kind.
func (m manifests) ofKind(kind string) []doc {
	var found []doc
	for _, d := range m {
		if d.Kind == kind {
			found = append(found, d)
		}
	}
	return found
}

// one returns the single manifest of a kind, failing if there is not exactly one.
func (m manifests) one(t *testing.T, kind string) doc {
	t.Helper()
	found := m.ofKind(kind)
	if len(found) != 1 {
		t.Fatalf("want exactly 1 %s, got %d", kind, len(found))
	}
	return found[0]
}

// decode parses a manifest into a typed view. JSON field matching is
// case-insensitive, so the structs below need no tags.
func decode[T any](t *testing.T, d doc) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(d.json, &v); err != nil {
		t.Fatalf("%s %s: %v", d.Kind, d.Metadata.Name, err)
	}
	return v
}

// The few parts of Kubernetes objects the tests look at.

type statefulSet struct {
	Metadata objectMeta
	Spec     struct {
		Replicas            *int
		ServiceName         string
		PodManagementPolicy string
		Selector            struct{ MatchLabels map[string]string }
		Template            struct {
			Metadata objectMeta
			Spec     podSpec
		}
		VolumeClaimTemplates []struct {
			Metadata objectMeta
			Spec     struct {
				Resources struct{ Requests map[string]any }
			}
		}
	}
}

type podSpec struct {
	TerminationGracePeriodSeconds *int
	EnableServiceLinks            *bool
	AutomountServiceAccountToken  *bool
	RestartPolicy                 string
	SecurityContext               securityContext
	InitContainers                []container
	Containers                    []container
	Volumes                       []struct {
		Name                  string
		EmptyDir              *struct{ SizeLimit string }
		PersistentVolumeClaim *struct{ ClaimName string }
	}
	Affinity *struct {
		PodAntiAffinity *struct {
			PreferredDuringSchedulingIgnoredDuringExecution []struct {
				Weight          int
				PodAffinityTerm affinityTerm
			}
			RequiredDuringSchedulingIgnoredDuringExecution []affinityTerm
		}
		NodeAffinity any
	}
}

type affinityTerm struct {
	TopologyKey   string
	LabelSelector struct{ MatchLabels map[string]string }
}

type securityContext struct {
	RunAsNonRoot             *bool
	AllowPrivilegeEscalation *bool
	ReadOnlyRootFilesystem   *bool
	Capabilities             struct{ Drop []string }
	SeccompProfile           struct{ Type string }
}

type container struct {
	Name    string
	Image   string
	Command []string
	Args    []string
	Ports   []struct {
		Name          string
		ContainerPort int
	}
	Env []struct {
		Name      string
		Value     string
		ValueFrom *struct {
			SecretKeyRef *struct{ Name, Key string }
			FieldRef     *struct{ FieldPath string }
		}
	}
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string }
	}
	StartupProbe, ReadinessProbe, LivenessProbe *probe
	Lifecycle                                   *struct {
		PreStop *struct {
			Sleep *struct{ Seconds int }
			Exec  any
		}
	}
	Resources       struct{ Requests, Limits map[string]any }
	SecurityContext securityContext
	VolumeMounts    []struct{ Name, MountPath string }
}

type probe struct {
	HTTPGet *struct {
		Path string
		Port any
	}
}

type configMap struct {
	Metadata objectMeta
	Data     map[string]string
}

type secret struct {
	Metadata   objectMeta
	Data       map[string]string
	StringData map[string]string
}

type service struct {
	Metadata objectMeta
	Spec     struct {
		ClusterIP                string
		PublishNotReadyAddresses bool
		Selector                 map[string]string
		Ports                    []struct {
			Name       string
			Port       int
			TargetPort any
		}
	}
}

type hpa struct {
	APIVersion string
	Spec       struct {
		ScaleTargetRef struct{ APIVersion, Kind, Name string }
		MinReplicas    int
		MaxReplicas    int
		Metrics        []struct {
			Type     string
			Resource *struct {
				Name   string
				Target struct {
					Type               string
					AverageUtilization int
				}
			}
		}
		Behavior struct {
			ScaleUp, ScaleDown struct{ StabilizationWindowSeconds int }
		}
	}
}

// engine returns the StatefulSet and its parkme container.
func engine(t *testing.T, m manifests) (statefulSet, container) {
	t.Helper()
	sts := decode[statefulSet](t, m.one(t, "StatefulSet"))
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == "parkme" {
			return sts, c
		}
	}
	t.Fatal("StatefulSet has no container named parkme")
	return sts, container{}
}

// engineConfig returns the ConfigMap the engine reads its settings from.
func engineConfig(t *testing.T, m manifests) configMap {
	t.Helper()
	_, c := engine(t, m)
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil {
		t.Fatalf("the engine should take its settings from one ConfigMap, envFrom is %+v", c.EnvFrom)
	}
	name := c.EnvFrom[0].ConfigMapRef.Name
	for _, d := range m.ofKind("ConfigMap") {
		if d.Metadata.Name == name {
			return decode[configMap](t, d)
		}
	}
	t.Fatalf("envFrom names ConfigMap %q, which the chart does not render", name)
	return configMap{}
}

// subset reports whether every pair of want is in have.
func subset(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return len(want) > 0
}

type cronJob struct {
	Metadata objectMeta
	Spec     struct {
		Schedule          string
		TimeZone          string
		ConcurrencyPolicy string
		JobTemplate       struct {
			Spec struct {
				Template struct {
					Metadata objectMeta
					Spec     podSpec
				}
			}
		}
	}
}

type persistentVolumeClaim struct {
	Metadata objectMeta
	Spec     struct {
		Resources struct{ Requests map[string]any }
	}
}

// envValue returns the plain value of an env entry of c, failing if it is missing.
func envValue(t *testing.T, c container, name string) string {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			if e.ValueFrom != nil {
				t.Fatalf("%s of container %s should be a plain value, got %+v", name, c.Name, e.ValueFrom)
			}
			return e.Value
		}
	}
	t.Fatalf("container %s has no %s", c.Name, name)
	return ""
}

// hasEnv reports whether c sets name.
func hasEnv(c container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

// kubeExpand does what the kubelet does to a container's command, args and env
// values: $(NAME) becomes the value of an env var defined earlier, $$ becomes $,
// and any other $(...) is left as it is.
func kubeExpand(s string, vars map[string]string) string {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			out.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			out.WriteByte('$')
			i++
		case next == '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				out.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				out.WriteString(v)
			} else {
				out.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			out.WriteByte('$')
		}
	}
	return out.String()
}
