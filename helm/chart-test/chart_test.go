// Package charttest checks the promises of the ParkMe Helm chart (helm/parkme)
// by rendering it with `helm template` and reading the manifests. One test per
// promise; run through helm/test.sh, which also lints the chart.
package charttest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Figures the chart promises, with where they come from.
const (
	healthPath  = "/health/"      // contract §3
	readyPath   = "/health/ready" // 200 while serving, 503 before start-up finished and from the start of a drain
	metricsPath = "/metrics"      // contract §3
	httpPort    = "http"          // the container port name every probe and Service uses

	engineDrainSeconds = 10   // contract §1: exit within 10 s of SIGTERM
	defaultLeaseMs     = 5000 // contract §7: PARKME_LEASE_MS default

	// Old deployment guide, "Horizontal Scaling": 2..10 servers, CPU > 70 %
	// for 5 min up, low for 10 min down; servers of 2 vCPU / 4 GB.
	guideMinPods            = 2
	guideMaxPods            = 10
	guideCPUPercent         = 70
	guideScaleUpSeconds     = 5 * 60
	guideScaleDownSeconds   = 10 * 60
	guideCPULimit           = "2"
	guideMemoryLimit        = "4Gi"
	ingressWebsocketTimeout = "3600" // seconds; long-lived websockets
	ingressBodySize         = "1m"   // contract §3: bodies over 1 MiB get 413
)

// Contract §6.
var contractMetrics = []string{
	"parkme_sensor_events_total",
	"parkme_bookings_total",
	"parkme_booking_latency_seconds",
	"parkme_ws_connections",
	"parkme_journal_write_seconds",
	"parkme_snapshot_seconds",
	"parkme_actor_mailbox_len",
	"parkme_spots",
}

// The value sets helm/test.sh renders: defaults and the ci/ files.
var valueSets = map[string][]string{
	"default":     nil,
	"all-enabled": valuesFile("all-enabled-values.yaml"),
	"scylla":      valuesFile("scylla-values.yaml"),
	"cluster":     valuesFile("cluster-values.yaml"),
}

// The value sets that make every pod a cluster node (scylla storage and Redis).
var clusterValueSets = []string{"all-enabled", "scylla", "cluster"}

func TestStartupAndLivenessProbesGetHealth(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			_, c := engine(t, render(t, args...))
			probes := map[string]*probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe}
			for kind, p := range probes {
				if p == nil || p.HTTPGet == nil {
					t.Fatalf("%s probe: want an httpGet probe, got %+v", kind, p)
				}
				if p.HTTPGet.Path != healthPath || p.HTTPGet.Port != httpPort {
					t.Errorf("%s probe: want GET %s on port %q, got %s on %v", kind, healthPath, httpPort, p.HTTPGet.Path, p.HTTPGet.Port)
				}
			}
			if !hasPort(c, httpPort) {
				t.Errorf("the container has no port named %q for the probes", httpPort)
			}
		})
	}
}

func TestSecretValuesAreNeverInConfigMaps(t *testing.T) {
	// Admin token and JWT secret, plus the cluster secret in cluster mode;
	// ci/cluster-values.yaml takes all three from an existing Secret.
	rendered := map[string]int{"default": 2, "all-enabled": 3, "scylla": 3, "cluster": 0}
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			m := render(t, args...)
			secretValues := map[string]string{}
			for _, d := range m.ofKind("Secret") {
				for key, value := range decodedSecretValues(t, decode[secret](t, d)) {
					secretValues[d.Metadata.Name+"/"+key] = value
				}
			}
			if len(secretValues) != rendered[name] {
				t.Fatalf("want %d values in the chart's Secrets, got %d", rendered[name], len(secretValues))
			}
			for _, d := range m {
				if d.Kind == "Secret" {
					continue
				}
				for key, value := range secretValues {
					if strings.Contains(d.text, value) {
						t.Errorf("the value of Secret key %q appears in %s %s", key, d.Kind, d.Metadata.Name)
					}
				}
			}
		})
	}
}

func TestSecretsReachTheEngineFromTheSecret(t *testing.T) {
	const adminToken, jwtSecret = "admin-token-for-the-test", "jwt-secret-for-the-test"
	m := render(t, "--set", "auth.adminToken="+adminToken, "--set", "auth.jwtSecret="+jwtSecret)
	s := decode[secret](t, m.one(t, "Secret"))
	values := decodedSecretValues(t, s)
	_, c := engine(t, m)
	for _, env := range []string{"PARKME_ADMIN_TOKEN", "PARKME_JWT_SECRET"} {
		ref := secretRef(t, c, env)
		if ref.Name != s.Metadata.Name {
			t.Errorf("%s comes from Secret %q, want the chart's Secret %q", env, ref.Name, s.Metadata.Name)
		}
		if _, ok := values[ref.Key]; !ok {
			t.Errorf("%s reads key %q, which the Secret does not have", env, ref.Key)
		}
	}
	if values[secretRef(t, c, "PARKME_ADMIN_TOKEN").Key] != adminToken || values[secretRef(t, c, "PARKME_JWT_SECRET").Key] != jwtSecret {
		t.Error("PARKME_ADMIN_TOKEN and PARKME_JWT_SECRET should read auth.adminToken and auth.jwtSecret")
	}
}

func TestExistingSecretIsUsedInsteadOfRenderingOne(t *testing.T) {
	m := render(t, "--set", "auth.existingSecret=parking-auth",
		"--set", "auth.adminTokenKey=admin", "--set", "auth.jwtSecretKey=jwt")
	if n := len(m.ofKind("Secret")); n != 0 {
		t.Errorf("with auth.existingSecret the chart must not render a Secret, got %d", n)
	}
	_, c := engine(t, m)
	want := map[string]string{"PARKME_ADMIN_TOKEN": "admin", "PARKME_JWT_SECRET": "jwt"}
	for env, key := range want {
		ref := secretRef(t, c, env)
		if ref.Name != "parking-auth" || ref.Key != key {
			t.Errorf("%s: want parking-auth/%s, got %s/%s", env, key, ref.Name, ref.Key)
		}
	}
}

func TestParkmeEnvWiring(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		data := engineConfig(t, render(t)).Data
		want := map[string]string{
			"PARKME_LISTEN":                 "0.0.0.0:8080",
			"PARKME_STORAGE":                "embedded",
			"PARKME_DATA_DIR":               "/var/lib/parkme",
			"PARKME_LOG_FORMAT":             "json",
			"PARKME_RATE_ANON_PER_HOUR":     "100", // contract §3 / old deployment
			"PARKME_RATE_USER_PER_HOUR":     "1000",
			"PARKME_RATE_BOOKINGS_PER_HOUR": "100",
		}
		assertData(t, data, want)
		if _, ok := data["PARKME_REDIS_URL"]; ok {
			t.Error("PARKME_REDIS_URL must be unset without redis.url (single node)")
		}
	})
	t.Run("values flow through", func(t *testing.T) {
		m := render(t, "--set", "containerPort=9090", "--set", "config.dataDir=/srv/parkme",
			"--set", "config.logFormat=pretty", "--set", "config.rateLimits.anonPerHour=7",
			"--set", "config.rateLimits.userPerHour=2000000", "--set", "config.rateLimits.bookingsPerHour=9")
		assertData(t, engineConfig(t, m).Data, map[string]string{
			"PARKME_LISTEN":                 "0.0.0.0:9090",
			"PARKME_DATA_DIR":               "/srv/parkme",
			"PARKME_LOG_FORMAT":             "pretty",
			"PARKME_RATE_ANON_PER_HOUR":     "7",
			"PARKME_RATE_USER_PER_HOUR":     "2000000",
			"PARKME_RATE_BOOKINGS_PER_HOUR": "9",
		})
		_, c := engine(t, m)
		if !hasPortNumber(c, httpPort, 9090) {
			t.Errorf("the container port %q should follow containerPort=9090, got %+v", httpPort, c.Ports)
		}
	})
	t.Run("no service links", func(t *testing.T) {
		// Kubernetes would otherwise inject PARKME_PORT, PARKME_SERVICE_HOST, ...
		// for a Service named "parkme" into the engine's PARKME_* namespace.
		sts, _ := engine(t, render(t, "--set", "fullnameOverride=parkme"))
		if links := sts.Spec.Template.Spec.EnableServiceLinks; links == nil || *links {
			t.Error("enableServiceLinks must be false")
		}
	})
}

func TestRedisURLOnlyWhenSet(t *testing.T) {
	m := render(t, valuesFile("scylla-values.yaml")...)
	if got := engineConfig(t, m).Data["PARKME_REDIS_URL"]; got != "redis://redis-master.cache.svc:6379/0" {
		t.Errorf("PARKME_REDIS_URL = %q, want redis.url from ci/scylla-values.yaml", got)
	}

	m = render(t, append(valuesFile("scylla-values.yaml"),
		"--set", "redis.url=", "--set", "redis.existingSecret=redis-auth", "--set", "redis.existingSecretKey=url")...)
	if _, ok := engineConfig(t, m).Data["PARKME_REDIS_URL"]; ok {
		t.Error("with redis.existingSecret, PARKME_REDIS_URL must not be in the ConfigMap")
	}
	_, c := engine(t, m)
	if ref := secretRef(t, c, "PARKME_REDIS_URL"); ref.Name != "redis-auth" || ref.Key != "url" {
		t.Errorf("PARKME_REDIS_URL: want redis-auth/url, got %s/%s", ref.Name, ref.Key)
	}
}

func TestScyllaStorageURL(t *testing.T) {
	m := render(t, "--set", "storage.mode=scylla", "--set", "scylla.hosts={db-a,db-b:9142}",
		"--set", "scylla.port=9043", "--set", "scylla.keyspace=lots")
	assertData(t, engineConfig(t, m).Data, map[string]string{"PARKME_STORAGE": "scylla://db-a:9043,db-b:9142/lots"})

	sts, _ := engine(t, m)
	if n := len(sts.Spec.VolumeClaimTemplates); n != 0 {
		t.Errorf("scylla mode keeps no state on the pod: want no volumeClaimTemplates, got %d", n)
	}
}

func TestEmbeddedModeClaimsAVolumePerPod(t *testing.T) {
	m := render(t, "--set", "storage.embedded.size=3Gi")
	sts, c := engine(t, m)
	data := engineConfig(t, m).Data
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volumeClaimTemplate, got %d", len(sts.Spec.VolumeClaimTemplates))
	}
	claim := sts.Spec.VolumeClaimTemplates[0]
	if got := fmt.Sprint(claim.Spec.Resources.Requests["storage"]); got != "3Gi" {
		t.Errorf("claim size = %s, want storage.embedded.size 3Gi", got)
	}
	if mount := mountPath(c, claim.Metadata.Name); mount != data["PARKME_DATA_DIR"] {
		t.Errorf("the claim is mounted at %q, want PARKME_DATA_DIR %q", mount, data["PARKME_DATA_DIR"])
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == claim.Metadata.Name {
			t.Errorf("pod volume %q shadows the volumeClaimTemplate", v.Name)
		}
	}
}

func TestHPABoundsAndCPUTarget(t *testing.T) {
	for _, name := range []string{"scylla", "all-enabled"} {
		t.Run(name, func(t *testing.T) {
			m := render(t, valueSets[name]...)
			h := decode[hpa](t, m.one(t, "HorizontalPodAutoscaler"))
			sts, _ := engine(t, m)
			if h.APIVersion != "autoscaling/v2" {
				t.Errorf("apiVersion = %s, want autoscaling/v2", h.APIVersion)
			}
			if ref := h.Spec.ScaleTargetRef; ref.Kind != "StatefulSet" || ref.Name != sts.Metadata.Name {
				t.Errorf("scaleTargetRef = %+v, want the StatefulSet %s", ref, sts.Metadata.Name)
			}
			if h.Spec.MinReplicas != guideMinPods || h.Spec.MaxReplicas != guideMaxPods {
				t.Errorf("bounds = %d..%d, want %d..%d", h.Spec.MinReplicas, h.Spec.MaxReplicas, guideMinPods, guideMaxPods)
			}
			if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Resource == nil ||
				h.Spec.Metrics[0].Resource.Name != "cpu" ||
				h.Spec.Metrics[0].Resource.Target.Type != "Utilization" ||
				h.Spec.Metrics[0].Resource.Target.AverageUtilization != guideCPUPercent {
				t.Errorf("metrics = %+v, want CPU utilization %d %%", h.Spec.Metrics, guideCPUPercent)
			}
			if up := h.Spec.Behavior.ScaleUp.StabilizationWindowSeconds; up != guideScaleUpSeconds {
				t.Errorf("scale-up stabilization = %d s, want %d s", up, guideScaleUpSeconds)
			}
			if down := h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds; down != guideScaleDownSeconds {
				t.Errorf("scale-down stabilization = %d s, want %d s", down, guideScaleDownSeconds)
			}
			if sts.Spec.Replicas != nil {
				t.Errorf("with the HPA on, the StatefulSet must not set replicas (got %d): the HPA owns it", *sts.Spec.Replicas)
			}
		})
	}
}

func TestHPARefusedInEmbeddedMode(t *testing.T) {
	if n := len(render(t).ofKind("HorizontalPodAutoscaler")); n != 0 {
		t.Errorf("default (embedded) values must not render an HPA, got %d", n)
	}
	out, err := renderErr(t, "--set", "autoscaling.enabled=true")
	if err == nil {
		t.Fatal("storage.mode=embedded with autoscaling.enabled=true must fail to render")
	}
	if !strings.Contains(out, "embedded") {
		t.Errorf("the failure should say why (embedded storage), got: %s", out)
	}
}

func TestSecurityContextIsRestricted(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			sts, c := engine(t, render(t, args...))
			pod := sts.Spec.Template.Spec.SecurityContext
			if !isTrue(pod.RunAsNonRoot) {
				t.Error("pod: runAsNonRoot must be true")
			}
			if pod.SeccompProfile.Type != "RuntimeDefault" {
				t.Errorf("pod: seccompProfile = %q, want RuntimeDefault", pod.SeccompProfile.Type)
			}
			sc := c.SecurityContext
			if !isTrue(sc.RunAsNonRoot) {
				t.Error("container: runAsNonRoot must be true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("container: allowPrivilegeEscalation must be false")
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				t.Error("container: readOnlyRootFilesystem must be true")
			}
			if strings.Join(sc.Capabilities.Drop, ",") != "ALL" {
				t.Errorf("container: capabilities.drop = %v, want [ALL]", sc.Capabilities.Drop)
			}
			if sc.SeccompProfile.Type != "RuntimeDefault" {
				t.Errorf("container: seccompProfile = %q, want RuntimeDefault", sc.SeccompProfile.Type)
			}
		})
	}
}

func TestTmpIsAWritableEmptyDir(t *testing.T) {
	sts, c := engine(t, render(t))
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if mountPath(c, v.Name) == "/tmp" {
			if v.EmptyDir == nil {
				t.Errorf("/tmp is volume %q, want an emptyDir", v.Name)
			}
			return
		}
	}
	t.Error("the root filesystem is read-only, so /tmp needs an emptyDir mount")
}

func TestResourcesSizedLikeOldGuide(t *testing.T) {
	_, c := engine(t, render(t))
	if got := fmt.Sprint(c.Resources.Limits["cpu"]); got != guideCPULimit {
		t.Errorf("cpu limit = %s, want %s", got, guideCPULimit)
	}
	if got := fmt.Sprint(c.Resources.Limits["memory"]); got != guideMemoryLimit {
		t.Errorf("memory limit = %s, want %s", got, guideMemoryLimit)
	}
	if c.Resources.Requests["cpu"] == nil {
		t.Error("a cpu request is needed: the HPA's percentage is of the request")
	}
}

func TestServicesForHTTPAndHeadless(t *testing.T) {
	m := render(t)
	sts, c := engine(t, m)
	podLabels := sts.Spec.Template.Metadata.Labels
	var headless, http int
	for _, d := range m.ofKind("Service") {
		svc := decode[service](t, d)
		if !subset(svc.Spec.Selector, podLabels) {
			t.Errorf("Service %s does not select the engine's pods", svc.Metadata.Name)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != httpPort {
			t.Errorf("Service %s should forward to the %q port, got %+v", svc.Metadata.Name, httpPort, svc.Spec.Ports)
		}
		if svc.Spec.ClusterIP == "None" {
			headless++
			if sts.Spec.ServiceName != svc.Metadata.Name {
				t.Errorf("StatefulSet serviceName = %q, want the headless Service %q", sts.Spec.ServiceName, svc.Metadata.Name)
			}
		} else {
			http++
		}
	}
	if headless != 1 || http != 1 {
		t.Errorf("want one HTTP/websocket Service and one headless Service, got %d and %d", http, headless)
	}
	if !hasPort(c, httpPort) {
		t.Errorf("the container has no port named %q", httpPort)
	}
}

func TestPodDisruptionBudgetLetsOnePodDownAtATime(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			m := render(t, args...)
			sts, _ := engine(t, m)
			pdb := decode[struct {
				Spec struct {
					MaxUnavailable any
					Selector       struct{ MatchLabels map[string]string }
				}
			}](t, m.one(t, "PodDisruptionBudget"))
			if !subset(pdb.Spec.Selector.MatchLabels, sts.Spec.Template.Metadata.Labels) {
				t.Error("the PodDisruptionBudget does not select the engine's pods")
			}
			// maxUnavailable, not minAvailable, so that a single-pod install can still
			// be drained; 1, so that a node drain or upgrade never takes two
			// cluster members (and their facilities) at once.
			if n, ok := pdb.Spec.MaxUnavailable.(float64); !ok || n != 1 {
				t.Errorf("maxUnavailable = %v, want 1", pdb.Spec.MaxUnavailable)
			}
		})
	}
}

func TestServiceMonitorScrapesMetrics(t *testing.T) {
	if n := len(render(t).ofKind("ServiceMonitor")); n != 0 {
		t.Errorf("the ServiceMonitor is opt-in, got %d by default", n)
	}
	m := render(t, valuesFile("all-enabled-values.yaml")...)
	sm := decode[struct {
		Metadata objectMeta
		Spec     struct {
			Selector  struct{ MatchLabels map[string]string }
			Endpoints []struct{ Port, Path string }
		}
	}](t, m.one(t, "ServiceMonitor"))
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != metricsPath || sm.Spec.Endpoints[0].Port != httpPort {
		t.Errorf("endpoints = %+v, want %s on port %q", sm.Spec.Endpoints, metricsPath, httpPort)
	}
	if sm.Metadata.Labels["release"] != "prometheus" {
		t.Error("metrics.serviceMonitor.labels should be on the ServiceMonitor")
	}
	var selected []string
	for _, d := range m.ofKind("Service") {
		if subset(sm.Spec.Selector.MatchLabels, d.Metadata.Labels) {
			selected = append(selected, d.Metadata.Name)
		}
	}
	if len(selected) != 1 {
		t.Errorf("the ServiceMonitor should select exactly one Service (else every series is scraped twice), selects %v", selected)
	}
}

func TestIngressIsWebsocketFriendly(t *testing.T) {
	if n := len(render(t).ofKind("Ingress")); n != 0 {
		t.Errorf("the Ingress is opt-in, got %d by default", n)
	}
	m := render(t, valuesFile("all-enabled-values.yaml")...)
	ing := decode[struct {
		Metadata objectMeta
		Spec     struct {
			Rules []struct {
				HTTP struct {
					Paths []struct {
						Backend struct {
							Service struct {
								Name string
								Port struct{ Name string }
							}
						}
					}
				}
			}
		}
	}](t, m.one(t, "Ingress"))
	assertData(t, ing.Metadata.Annotations, map[string]string{
		"nginx.ingress.kubernetes.io/proxy-read-timeout": ingressWebsocketTimeout,
		"nginx.ingress.kubernetes.io/proxy-send-timeout": ingressWebsocketTimeout,
		"nginx.ingress.kubernetes.io/proxy-body-size":    ingressBodySize,
	})
	httpService := ""
	for _, d := range m.ofKind("Service") {
		if decode[service](t, d).Spec.ClusterIP != "None" {
			httpService = d.Metadata.Name
		}
	}
	for _, rule := range ing.Spec.Rules {
		for _, p := range rule.HTTP.Paths {
			if p.Backend.Service.Name != httpService || p.Backend.Service.Port.Name != httpPort {
				t.Errorf("backend = %+v, want Service %s port %q", p.Backend.Service, httpService, httpPort)
			}
		}
	}
	if len(ing.Spec.Rules) == 0 {
		t.Error("the Ingress has no rules")
	}
}

func TestGrafanaDashboardCoversContractMetrics(t *testing.T) {
	if n := len(render(t).ofKind("ConfigMap")); n != 1 {
		t.Errorf("by default only the engine's ConfigMap is rendered, got %d ConfigMaps", n)
	}
	m := render(t, valuesFile("all-enabled-values.yaml")...)
	var dashboards []configMap
	for _, d := range m.ofKind("ConfigMap") {
		if d.Metadata.Labels["grafana_dashboard"] == "1" {
			dashboards = append(dashboards, decode[configMap](t, d))
		}
	}
	if len(dashboards) != 1 || len(dashboards[0].Data) != 1 {
		t.Fatalf("want one ConfigMap labelled grafana_dashboard=\"1\" holding one dashboard, got %d", len(dashboards))
	}
	for file, text := range dashboards[0].Data {
		var dash struct {
			Title  string
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal([]byte(text), &dash); err != nil {
			t.Fatalf("%s is not JSON: %v", file, err)
		}
		var exprs []string
		for _, p := range dash.Panels {
			for _, target := range p.Targets {
				exprs = append(exprs, target.Expr)
			}
		}
		all := strings.Join(exprs, "\n")
		for _, metric := range contractMetrics {
			if !strings.Contains(all, metric) {
				t.Errorf("dashboard %q has no panel for %s", dash.Title, metric)
			}
		}
	}
}

func TestSchemaRejectsWrongValues(t *testing.T) {
	cases := []struct {
		name, set, mentions string
	}{
		{"replicaCount not a number", "replicaCount=two", "replicaCount"},
		{"unknown storage mode", "storage.mode=foo", "storage/mode"},
		{"grace not above the drain", "terminationGracePeriodSeconds=5", "terminationGracePeriodSeconds"},
		{"cpu target above 100 %", "autoscaling.targetCPUUtilizationPercentage=150", "targetCPUUtilizationPercentage"},
		{"unknown log format", "config.logFormat=xml", "logFormat"},
		{"not a Redis URL", "redis.url=http://cache:6379", "redis/url"},
		{"bad keyspace", "scylla.keyspace=no-dashes", "keyspace"},
		{"misspelt key", "replicaCont=2", "replicaCont"},
		{"lease shorter than a renewal", "cluster.leaseMs=200", "leaseMs"},
		{"unknown anti-affinity", "antiAffinity.type=maybe", "antiAffinity"},
		{"negative preStop pause", "preStop.sleepSeconds=-1", "sleepSeconds"},
		{"retention of zero days", "backup.retentionDays=0", "retentionDays"},
		{"bad cluster domain", "clusterDomain=Cluster_Local", "clusterDomain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := renderErr(t, "--set", tc.set)
			if err == nil {
				t.Fatalf("--set %s rendered; the schema should refuse it", tc.set)
			}
			if !strings.Contains(out, tc.mentions) {
				t.Errorf("the error should name %q, got: %s", tc.mentions, out)
			}
		})
	}
}

func TestInconsistentValuesFail(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		mentions string
	}{
		{"embedded with two pods", []string{"--set", "replicaCount=2"}, "replicaCount must be 1"},
		{"scylla with three pods without Redis", []string{"--set", "storage.mode=scylla", "--set", "scylla.hosts={db}", "--set", "replicaCount=3"}, "Redis"},
		{"autoscaling without Redis", []string{"--set", "storage.mode=scylla", "--set", "scylla.hosts={db}", "--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=1", "--set", "autoscaling.minReplicas=1"}, "Redis"},
		{"backup of embedded storage", []string{"--set", "backup.enabled=true"}, "backup.enabled needs storage.mode=scylla"},
		{"existing cluster Secret and inline secret", append(valuesFile("scylla-values.yaml"), "--set", "cluster.existingSecret=x", "--set", "cluster.secret=y"), "cluster.existingSecret"},
		{"scylla without hosts", []string{"--set", "storage.mode=scylla"}, "scylla.hosts"},
		{"several pods without Redis", append(valuesFile("scylla-values.yaml"), "--set", "redis.url="), "Redis"},
		{"Redis password in a ConfigMap", []string{"--set", "redis.url=redis://:hunter2@cache:6379"}, "redis.existingSecret"},
		{"HPA min above max", append(valuesFile("scylla-values.yaml"), "--set", "autoscaling.minReplicas=11"), "minReplicas"},
		{"existing Secret and inline token", []string{"--set", "auth.existingSecret=x", "--set", "auth.adminToken=y"}, "auth.existingSecret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := renderErr(t, tc.args...)
			if err == nil {
				t.Fatalf("%v rendered; the chart should refuse it", tc.args)
			}
			if !strings.Contains(out, tc.mentions) {
				t.Errorf("the error should mention %q, got: %s", tc.mentions, out)
			}
		})
	}
}

// Small helpers for the tests above.

func decodedSecretValues(t *testing.T, s secret) map[string]string {
	t.Helper()
	values := map[string]string{}
	for k, v := range s.StringData {
		values[k] = v
	}
	for k, v := range s.Data {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("Secret key %q is not base64: %v", k, err)
		}
		values[k] = string(raw)
	}
	return values
}

func secretRef(t *testing.T, c container, env string) struct{ Name, Key string } {
	t.Helper()
	for _, e := range c.Env {
		if e.Name != env {
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Fatalf("%s must come from a secretKeyRef, got %+v", env, e)
		}
		return *e.ValueFrom.SecretKeyRef
	}
	t.Fatalf("the container has no %s", env)
	return struct{ Name, Key string }{}
}

func assertData(t *testing.T, have, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			t.Errorf("%s = %q (present: %v), want %q", k, got, ok, v)
		}
	}
}

func hasPort(c container, name string) bool {
	for _, p := range c.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

func hasPortNumber(c container, name string, number int) bool {
	for _, p := range c.Ports {
		if p.Name == name && p.ContainerPort == number {
			return true
		}
	}
	return false
}

func mountPath(c container, volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

func isTrue(b *bool) bool { return b != nil && *b }

func TestReadmeListsEveryValue(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, found := strings.Cut(string(readme), "## Values")
	if !found {
		t.Fatal("README.md has no \"## Values\" section")
	}
	documented := func(path string) bool { return strings.Contains(table, "| `"+path+"` |") }
	for _, path := range leafPaths("", values) {
		ok := false
		for p := path; p != "" && !ok; p = parentPath(p) {
			ok = documented(p)
		}
		if !ok {
			t.Errorf("README.md's values table does not list %s", path)
		}
	}
}

// leafPaths lists the dotted paths of values.yaml's leaves (empty maps count as leaves).
func leafPaths(prefix string, values map[string]any) []string {
	var paths []string
	for key, value := range values {
		path := key
		if prefix != "" {
			path = prefix + "." + key
		}
		if nested, ok := value.(map[string]any); ok && len(nested) > 0 {
			paths = append(paths, leafPaths(path, nested)...)
		} else {
			paths = append(paths, path)
		}
	}
	return paths
}

func parentPath(path string) string {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[:i]
	}
	return ""
}
