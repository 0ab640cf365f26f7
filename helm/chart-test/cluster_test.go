package charttest

// Promises of the chart's cluster mode (contract §7): node identity and
// addresses, the cluster secret, readiness and the stop sequence, spreading,
// the example values and the NOTES. One test per promise.

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestReadinessProbeGetsHealthReady(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			_, c := engine(t, render(t, args...))
			p := c.ReadinessProbe
			if p == nil || p.HTTPGet == nil {
				t.Fatalf("readiness probe: want an httpGet probe, got %+v", p)
			}
			// /health/ready turns 503 at the start of a drain, so the Service stops
			// sending to a pod whose facilities are moving away.
			if p.HTTPGet.Path != readyPath || p.HTTPGet.Port != httpPort {
				t.Errorf("readiness probe: want GET %s on port %q, got %s on %v", readyPath, httpPort, p.HTTPGet.Path, p.HTTPGet.Port)
			}
		})
	}
}

func TestNodeIDIsThePodName(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			_, c := engine(t, render(t, args...))
			for _, e := range c.Env {
				if e.Name != "PARKME_NODE_ID" {
					continue
				}
				if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
					t.Errorf("PARKME_NODE_ID must come from fieldRef metadata.name, got %+v", e)
				}
				return
			}
			t.Error("the container has no PARKME_NODE_ID")
		})
	}
}

func TestAdvertiseURLIsThePodsNameInTheHeadlessService(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // for pod 0 of release "pm" in namespace "parking"
	}{
		{"cluster example", valuesFile("cluster-values.yaml"), "http://pm-parkme-0.pm-parkme-headless.parking.svc.cluster.local:8080"},
		{"own domain and port", append(valuesFile("scylla-values.yaml"), "--set", "clusterDomain=corp.internal", "--set", "containerPort=9090"),
			"http://pm-parkme-0.pm-parkme-headless.parking.svc.corp.internal:9090"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.args...)
			sts, c := engine(t, m)
			// What the kubelet sees: env in order, $(VAR) only for vars defined before.
			pod := sts.Metadata.Name + "-0"
			vars := map[string]string{}
			got := ""
			for _, e := range c.Env {
				switch {
				case e.Name == "PARKME_NODE_ID":
					vars[e.Name] = pod
				case e.ValueFrom == nil:
					vars[e.Name] = kubeExpand(e.Value, vars)
				}
				if e.Name == "PARKME_ADVERTISE_URL" {
					got = vars[e.Name]
				}
			}
			if got != tc.want {
				t.Errorf("PARKME_ADVERTISE_URL of pod %s = %q, want %q", pod, got, tc.want)
			}
			// The name and port resolve: the headless Service is the StatefulSet's and
			// serves the container's http port, where /internal/v1/peer lives.
			for _, d := range m.ofKind("Service") {
				svc := decode[service](t, d)
				if svc.Spec.ClusterIP != "None" {
					continue
				}
				if !strings.Contains(got, "."+svc.Metadata.Name+".parking.svc.") || sts.Spec.ServiceName != svc.Metadata.Name {
					t.Errorf("the URL should name headless Service %s, the StatefulSet's serviceName %s", svc.Metadata.Name, sts.Spec.ServiceName)
				}
				port := fmt.Sprint(svc.Spec.Ports[0].Port)
				if !strings.HasSuffix(got, ":"+port) || !hasPortNumber(c, httpPort, svc.Spec.Ports[0].Port) {
					t.Errorf("the URL's port should be the container's http port %s", port)
				}
			}
		})
	}
}

func TestPeersReachPodsThatAreNotReady(t *testing.T) {
	// A draining node answers 503 on /health/ready but must still be reachable at
	// its PARKME_ADVERTISE_URL while it hands its facilities over; so must a
	// node that is starting up.
	for _, d := range render(t, valuesFile("cluster-values.yaml")...).ofKind("Service") {
		svc := decode[service](t, d)
		if svc.Spec.ClusterIP == "None" && !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("headless Service %s must publish not-ready addresses", svc.Metadata.Name)
		}
	}
}

func TestClusterNodesGetLeaseAndClusterSecret(t *testing.T) {
	wantLease := map[string]string{"all-enabled": "4000", "scylla": fmt.Sprint(defaultLeaseMs), "cluster": fmt.Sprint(defaultLeaseMs)}
	for _, name := range clusterValueSets {
		t.Run(name, func(t *testing.T) {
			m := render(t, valueSets[name]...)
			assertData(t, engineConfig(t, m).Data, map[string]string{"PARKME_LEASE_MS": wantLease[name]})
			_, c := engine(t, m)
			secretRef(t, c, "PARKME_CLUSTER_SECRET")
		})
	}
	// Not cluster nodes: embedded storage, or CQL without Redis (contract §1).
	notCluster := map[string][]string{
		"embedded":           nil,
		"scylla, no Redis":   {"--set", "storage.mode=scylla", "--set", "scylla.hosts={db}"},
		"Redis, no scylla":   {"--set", "redis.url=redis://cache:6379"},
		"embedded with auth": {"--set", "auth.existingSecret=parking-auth"},
	}
	for name, args := range notCluster {
		t.Run(name, func(t *testing.T) {
			m := render(t, args...)
			if v, ok := engineConfig(t, m).Data["PARKME_LEASE_MS"]; ok {
				t.Errorf("PARKME_LEASE_MS = %q outside cluster mode", v)
			}
			_, c := engine(t, m)
			if hasEnv(c, "PARKME_CLUSTER_SECRET") {
				t.Error("PARKME_CLUSTER_SECRET outside cluster mode")
			}
			for _, d := range m.ofKind("Secret") {
				if _, ok := decode[secret](t, d).Data["cluster-secret"]; ok {
					t.Errorf("Secret %s holds a cluster secret outside cluster mode", d.Metadata.Name)
				}
			}
		})
	}
}

func TestClusterSecretIsGeneratedOrTakenFromExistingSecret(t *testing.T) {
	t.Run("generated", func(t *testing.T) {
		m := render(t, valuesFile("scylla-values.yaml")...)
		_, c := engine(t, m)
		ref := secretRef(t, c, "PARKME_CLUSTER_SECRET")
		var found bool
		for _, d := range m.ofKind("Secret") {
			if d.Metadata.Name != ref.Name {
				continue
			}
			found = true
			value := decodedSecretValues(t, decode[secret](t, d))[ref.Key]
			if len(value) < 32 {
				t.Errorf("generated cluster secret has %d characters, want at least 32", len(value))
			}
		}
		if !found {
			t.Fatalf("PARKME_CLUSTER_SECRET reads Secret %q, which the chart does not render", ref.Name)
		}
	})
	t.Run("given", func(t *testing.T) {
		const given = "cluster-secret-for-the-test"
		m := render(t, append(valuesFile("scylla-values.yaml"), "--set", "cluster.secret="+given)...)
		_, c := engine(t, m)
		ref := secretRef(t, c, "PARKME_CLUSTER_SECRET")
		for _, d := range m.ofKind("Secret") {
			if d.Metadata.Name == ref.Name {
				if got := decodedSecretValues(t, decode[secret](t, d))[ref.Key]; got != given {
					t.Errorf("cluster secret = %q, want cluster.secret %q", got, given)
				}
				return
			}
		}
		t.Fatalf("no Secret %q", ref.Name)
	})
	t.Run("existingSecret", func(t *testing.T) {
		m := render(t, append(valuesFile("scylla-values.yaml"), "--set", "cluster.existingSecret=peers", "--set", "cluster.secretKey=shared")...)
		_, c := engine(t, m)
		if ref := secretRef(t, c, "PARKME_CLUSTER_SECRET"); ref.Name != "peers" || ref.Key != "shared" {
			t.Errorf("PARKME_CLUSTER_SECRET: want peers/shared, got %s/%s", ref.Name, ref.Key)
		}
		for _, d := range m.ofKind("Secret") {
			if _, ok := decode[secret](t, d).Data["shared"]; ok {
				t.Errorf("with cluster.existingSecret the chart must not render the cluster secret (found in %s)", d.Metadata.Name)
			}
		}
	})
}

func TestPreStopPausesBeforeSIGTERM(t *testing.T) {
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			_, c := engine(t, render(t, args...))
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
				t.Fatalf("want a preStop sleep (the image has no shell), got %+v", c.Lifecycle)
			}
			if s := c.Lifecycle.PreStop.Sleep.Seconds; s != 5 {
				t.Errorf("preStop sleep = %d s, want the default 5 s", s)
			}
		})
	}
	_, c := engine(t, render(t, "--set", "preStop.sleepSeconds=0"))
	if c.Lifecycle != nil {
		t.Errorf("preStop.sleepSeconds=0 should drop the hook, got %+v", c.Lifecycle)
	}
}

func TestTerminationGraceCoversPreStopHandoffAndDrain(t *testing.T) {
	const preStop = 5
	handoff := 2 * defaultLeaseMs / 1000 // at worst a new owner waits out a lease
	for name, args := range valueSets {
		t.Run(name, func(t *testing.T) {
			sts, c := engine(t, render(t, args...))
			need := preStop + engineDrainSeconds
			if hasEnv(c, "PARKME_CLUSTER_SECRET") {
				need += handoff
			}
			grace := sts.Spec.Template.Spec.TerminationGracePeriodSeconds
			if grace == nil || *grace != 60 {
				t.Errorf("terminationGracePeriodSeconds = %v, want the default 60", grace)
			} else if *grace <= need {
				t.Errorf("terminationGracePeriodSeconds = %d, want more than %d s", *grace, need)
			}
		})
	}
	cases := []struct {
		name   string
		args   []string
		budget int
	}{
		{"embedded", nil, preStop + engineDrainSeconds},
		{"cluster", valuesFile("cluster-values.yaml"), preStop + handoff + engineDrainSeconds},
		{"cluster, longer lease", append(valuesFile("cluster-values.yaml"), "--set", "cluster.leaseMs=12500"), preStop + 25 + engineDrainSeconds},
		{"cluster, no pause", append(valuesFile("cluster-values.yaml"), "--set", "preStop.sleepSeconds=0"), handoff + engineDrainSeconds},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := renderErr(t, append(tc.args, "--set", fmt.Sprintf("terminationGracePeriodSeconds=%d", tc.budget))...)
			if err == nil {
				t.Fatalf("terminationGracePeriodSeconds=%d (the budget itself) must be refused", tc.budget)
			}
			if !strings.Contains(out, "terminationGracePeriodSeconds") || !strings.Contains(out, fmt.Sprintf("raise it above %d", tc.budget)) {
				t.Errorf("the failure should name the value and the budget %d, got: %s", tc.budget, out)
			}
			render(t, append(tc.args, "--set", fmt.Sprintf("terminationGracePeriodSeconds=%d", tc.budget+1))...)
		})
	}
}

func TestPodsPreferDifferentNodes(t *testing.T) {
	t.Run("soft by default", func(t *testing.T) {
		sts, _ := engine(t, render(t, valuesFile("cluster-values.yaml")...))
		a := sts.Spec.Template.Spec.Affinity
		if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Fatalf("want one preferred pod anti-affinity term, got %+v", a)
		}
		term := a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0]
		if term.PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
			t.Errorf("topologyKey = %q, want kubernetes.io/hostname", term.PodAffinityTerm.TopologyKey)
		}
		if !reflect.DeepEqual(term.PodAffinityTerm.LabelSelector.MatchLabels, sts.Spec.Selector.MatchLabels) {
			t.Errorf("the term selects %v, want the engine's pods %v", term.PodAffinityTerm.LabelSelector.MatchLabels, sts.Spec.Selector.MatchLabels)
		}
		if len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
			t.Error("soft anti-affinity must not be required: a cluster of 3 on 2 nodes must still schedule")
		}
	})
	t.Run("hard", func(t *testing.T) {
		sts, _ := engine(t, render(t, append(valuesFile("cluster-values.yaml"), "--set", "antiAffinity.type=hard", "--set", "antiAffinity.topologyKey=topology.kubernetes.io/zone")...))
		a := sts.Spec.Template.Spec.Affinity
		if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 ||
			a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey != "topology.kubernetes.io/zone" {
			t.Errorf("want one required term on topology.kubernetes.io/zone, got %+v", a)
		}
	})
	t.Run("none", func(t *testing.T) {
		sts, _ := engine(t, render(t, "--set", "antiAffinity.type=none"))
		if a := sts.Spec.Template.Spec.Affinity; a != nil {
			t.Errorf("antiAffinity.type=none: want no affinity, got %+v", a)
		}
	})
	t.Run("affinity replaces the preset", func(t *testing.T) {
		sts, _ := engine(t, render(t, "--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
			"--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists"))
		a := sts.Spec.Template.Spec.Affinity
		if a == nil || a.NodeAffinity == nil || a.PodAntiAffinity != nil {
			t.Errorf("affinity should be rendered as given, without the preset, got %+v", a)
		}
	})
}

func TestPeersStartAndStopInParallel(t *testing.T) {
	sts, _ := engine(t, render(t, valuesFile("cluster-values.yaml")...))
	if sts.Spec.PodManagementPolicy != "Parallel" {
		t.Errorf("podManagementPolicy = %q, want Parallel: the pods are peers, none waits for another", sts.Spec.PodManagementPolicy)
	}
}

func TestClusterExampleRendersThreeNodesOnScyllaAndRedis(t *testing.T) {
	m := render(t, valuesFile("cluster-values.yaml")...)
	sts, c := engine(t, m)
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", sts.Spec.Replicas)
	}
	assertData(t, engineConfig(t, m).Data, map[string]string{
		"PARKME_STORAGE":   "scylla://scylla-0.scylla:9042,scylla-1.scylla:9042/parkme",
		"PARKME_REDIS_URL": "redis://redis-master:6379",
		"PARKME_LEASE_MS":  fmt.Sprint(defaultLeaseMs),
	})
	if n := len(m.ofKind("Secret")); n != 0 {
		t.Errorf("every secret comes from the existing Secret, yet the chart renders %d", n)
	}
	for _, env := range []string{"PARKME_ADMIN_TOKEN", "PARKME_JWT_SECRET", "PARKME_CLUSTER_SECRET"} {
		if ref := secretRef(t, c, env); ref.Name != "parkme-secrets" {
			t.Errorf("%s comes from Secret %q, want parkme-secrets", env, ref.Name)
		}
	}
	if n := len(m.ofKind("CronJob")); n != 1 {
		t.Errorf("the example turns backups on: want 1 CronJob, got %d", n)
	}
}

func TestReadmeClusterExampleIsTheCIFile(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, found := strings.Cut(string(readme), "## Cluster mode")
	if !found {
		t.Fatal(`README.md has no "## Cluster mode" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, found := strings.Cut(section, "```yaml\n")
	if !found {
		t.Fatal(`README.md's "Cluster mode" section has no yaml block`)
	}
	block, _, _ = strings.Cut(block, "```")
	file, err := os.ReadFile(filepath.Join(chartDir, "ci", "cluster-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var inReadme, inFile any
	if err := yaml.Unmarshal([]byte(block), &inReadme); err != nil {
		t.Fatalf("README example: %v", err)
	}
	if err := yaml.Unmarshal(file, &inFile); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inReadme, inFile) {
		t.Errorf("README's cluster example differs from ci/cluster-values.yaml (the file CI renders):\nREADME: %v\nfile:   %v", inReadme, inFile)
	}
}

func TestNotesShowHowToWatchOwnership(t *testing.T) {
	notes := renderNotes(t, valuesFile("cluster-values.yaml")...)
	lines := map[string]bool{}
	for _, line := range strings.Split(notes, "\n") {
		lines[strings.TrimSpace(line)] = true
	}
	for _, want := range []string{
		"kubectl --namespace parking port-forward svc/pm-parkme 8080:8080 &",
		`export PARKME_TOKEN="$(kubectl --namespace parking get secret parkme-secrets \`,
		`curl -s -H "Authorization: Bearer $PARKME_TOKEN" http://127.0.0.1:8080/v1/cluster`,
	} {
		if !lines[want] {
			t.Errorf("NOTES should have the line %q:\n%s", want, notes)
		}
	}
	if notes := renderNotes(t); strings.Contains(notes, "/v1/cluster") {
		t.Errorf("a single-node install has no cluster to watch, yet NOTES mention /v1/cluster:\n%s", notes)
	}
}
