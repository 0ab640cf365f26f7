package charttest

// Promises of the optional backup CronJob (contract §8, `parkme backup`). The
// naming and retention steps are shell scripts in the rendered CronJob; these
// tests run them, as the kubelet would, against a temporary directory.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

const backupMount = "/backups"

// backupJob renders the chart and returns the CronJob, its pod's containers by
// name, and the engine's StatefulSet and container for comparison.
func backupJob(t *testing.T, args ...string) (cronJob, map[string]container, manifests) {
	t.Helper()
	m := render(t, args...)
	cj := decode[cronJob](t, m.one(t, "CronJob"))
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	byName := map[string]container{}
	for _, c := range append(append([]container{}, pod.InitContainers...), pod.Containers...) {
		byName[c.Name] = c
	}
	for _, name := range []string{"stamp", "backup", "retain"} {
		if _, ok := byName[name]; !ok {
			t.Fatalf("the backup pod has no container %q", name)
		}
	}
	return cj, byName, m
}

// jobRun is one simulated run of the backup pod against a temporary directory.
type jobRun struct {
	dir, scratch, pod string
}

func newJobRun(t *testing.T) jobRun {
	return jobRun{dir: t.TempDir(), scratch: t.TempDir(), pod: "pm-parkme-backup-29000000-x7k2p"}
}

// vars are the container's env as the kubelet resolves it, with the volume
// paths moved into the run's temporary directories.
func (r jobRun) vars(t *testing.T, c container) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			vars[e.Name] = r.pod
		case e.ValueFrom == nil:
			v := kubeExpand(e.Value, vars)
			if mount := mountPathOfDir(c, v); v == backupMount || mount == backupMount {
				v = r.dir + strings.TrimPrefix(v, backupMount)
			} else if mount != "" {
				v = filepath.Join(r.scratch, strings.TrimPrefix(v, mount))
			}
			vars[e.Name] = v
		default:
			t.Fatalf("container %s: env %s comes from %+v, which the test cannot resolve", c.Name, e.Name, e.ValueFrom)
		}
	}
	return vars
}

// mountPathOfDir returns the mount of c that holds path, if any.
func mountPathOfDir(c container, path string) string {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(path, m.MountPath+"/") {
			return m.MountPath
		}
	}
	return ""
}

// script runs a shell container's command and returns its output and error.
func (r jobRun) script(t *testing.T, c container) (string, error) {
	t.Helper()
	if len(c.Command) != 3 || c.Command[0] != "/bin/sh" || c.Command[1] != "-c" {
		t.Fatalf("container %s: want /bin/sh -c <script>, got %q", c.Name, c.Command)
	}
	vars := r.vars(t, c)
	cmd := exec.Command("/bin/sh", "-c", kubeExpand(c.Command[2], vars))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// backup plays `parkme backup`: it writes the file its args name.
func (r jobRun) backup(t *testing.T, c container) string {
	t.Helper()
	vars := r.vars(t, c)
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = kubeExpand(a, vars)
	}
	if len(args) != 3 || args[0] != "backup" || args[1] != "--out" {
		t.Fatalf("backup container args = %q, want backup --out FILE", args)
	}
	out := args[2]
	if filepath.Dir(out) != r.dir {
		t.Fatalf("the backup goes to %s, outside the backup volume %s", args[2], backupMount)
	}
	if err := os.WriteFile(out, []byte("PKB backup for the test"), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func (r jobRun) files(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// aged creates a file in the backup directory last modified age ago.
func (r jobRun) aged(t *testing.T, name string, age time.Duration) {
	t.Helper()
	path := filepath.Join(r.dir, name)
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

func TestBackupIsOptIn(t *testing.T) {
	m := render(t, valuesFile("scylla-values.yaml")...)
	if n := len(m.ofKind("CronJob")) + len(m.ofKind("PersistentVolumeClaim")); n != 0 {
		t.Errorf("backups are off by default, yet %d CronJob/claim objects are rendered", n)
	}
}

func TestBackupRunsDailyWithTheEnginesStorageSettings(t *testing.T) {
	cj, c, m := backupJob(t, valuesFile("cluster-values.yaml")...)
	_, engineC := engine(t, m)
	if cj.Spec.Schedule != "0 2 * * *" {
		t.Errorf("schedule = %q, want daily at 02:00 like the old deployment", cj.Spec.Schedule)
	}
	if cj.Spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("concurrencyPolicy = %q, want Forbid: one backup at a time", cj.Spec.ConcurrencyPolicy)
	}
	b := c["backup"]
	if b.Image != engineC.Image {
		t.Errorf("backup image = %s, want the engine's %s", b.Image, engineC.Image)
	}
	if len(b.EnvFrom) != 1 || b.EnvFrom[0].ConfigMapRef == nil || len(engineC.EnvFrom) != 1 ||
		b.EnvFrom[0].ConfigMapRef.Name != engineC.EnvFrom[0].ConfigMapRef.Name {
		t.Errorf("the backup should read the engine's ConfigMap (PARKME_STORAGE and the rest), envFrom = %+v", b.EnvFrom)
	}
	for _, e := range b.Env {
		if strings.HasPrefix(e.Name, "PARKME_") {
			t.Errorf("the backup sets %s itself; its storage settings must be the engine's", e.Name)
		}
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks must be false: Service links would inject PARKME_* variables")
	}
	if dataDir := engineConfig(t, m).Data["PARKME_DATA_DIR"]; mountPath(b, "data") != dataDir || mountPath(engineC, "data") != dataDir {
		t.Errorf("the backup should get a writable PARKME_DATA_DIR (%s) like the engine's", dataDir)
	}

	cj, _, _ = backupJob(t, valuesFile("all-enabled-values.yaml")...)
	if cj.Spec.Schedule != "30 3 * * *" || cj.Spec.TimeZone != "Europe/Berlin" {
		t.Errorf("schedule %q in %q, want backup.schedule and backup.timeZone of ci/all-enabled-values.yaml", cj.Spec.Schedule, cj.Spec.TimeZone)
	}
}

func TestBackupPodIsNotCountedAsAnEngine(t *testing.T) {
	cj, _, m := backupJob(t, valuesFile("cluster-values.yaml")...)
	labels := cj.Spec.JobTemplate.Spec.Template.Metadata.Labels
	sts, _ := engine(t, m)
	if subset(sts.Spec.Selector.MatchLabels, labels) {
		t.Errorf("backup pod labels %v match the engine's selector: the Services, the PodDisruptionBudget and the anti-affinity would count it", labels)
	}
}

func TestBackupWritesToAClaimThatOutlivesTheRelease(t *testing.T) {
	t.Run("own claim", func(t *testing.T) {
		cj, c, m := backupJob(t, valuesFile("cluster-values.yaml")...)
		pvc := decode[persistentVolumeClaim](t, m.one(t, "PersistentVolumeClaim"))
		if pvc.Metadata.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Error("the backup claim needs helm.sh/resource-policy: keep, so helm uninstall leaves the backups")
		}
		if got := pvc.Spec.Resources.Requests["storage"]; got != "20Gi" {
			t.Errorf("claim size = %v, want the default 20Gi", got)
		}
		assertClaimMounted(t, cj, c, pvc.Metadata.Name)
	})
	t.Run("existingClaim", func(t *testing.T) {
		cj, c, m := backupJob(t, valuesFile("all-enabled-values.yaml")...)
		if n := len(m.ofKind("PersistentVolumeClaim")); n != 0 {
			t.Errorf("with backup.persistence.existingClaim the chart must not create a claim, got %d", n)
		}
		assertClaimMounted(t, cj, c, "parkme-backups-nfs")
	})
}

func assertClaimMounted(t *testing.T, cj cronJob, c map[string]container, claim string) {
	t.Helper()
	for _, v := range cj.Spec.JobTemplate.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		if v.PersistentVolumeClaim.ClaimName != claim {
			t.Errorf("volume %s uses claim %s, want %s", v.Name, v.PersistentVolumeClaim.ClaimName, claim)
		}
		for _, name := range []string{"backup", "retain"} {
			if mountPath(c[name], v.Name) != backupMount {
				t.Errorf("container %s should mount the claim at %s", name, backupMount)
			}
		}
		return
	}
	t.Errorf("the backup pod mounts no claim (want %s)", claim)
}

func TestBackupPrunesOnlyAfterABackupSucceeded(t *testing.T) {
	cj, c, _ := backupJob(t, valuesFile("cluster-values.yaml")...)
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	// Init containers run one after the other and a failed one fails the pod,
	// so the pruning (the main container) never runs after a failed backup.
	var order []string
	for _, ic := range pod.InitContainers {
		order = append(order, ic.Name)
	}
	if strings.Join(order, ",") != "stamp,backup" || len(pod.Containers) != 1 || pod.Containers[0].Name != "retain" {
		t.Errorf("want init containers stamp, backup, then retain; got init %v, main %d", order, len(pod.Containers))
	}
	if pod.RestartPolicy != "Never" {
		t.Errorf("restartPolicy = %q, want Never (a failed run is retried by the Job, backoffLimit)", pod.RestartPolicy)
	}
	// And the retain step itself refuses to prune when there is no backup to keep.
	r := newJobRun(t)
	r.aged(t, "parkme-20200101T020000Z.pkb", 400*24*time.Hour)
	if out, err := r.script(t, c["stamp"]); err != nil {
		t.Fatalf("stamp: %v\n%s", err, out)
	}
	if out, err := r.script(t, c["retain"]); err == nil {
		t.Errorf("retain without this run's backup should fail, got:\n%s", out)
	}
	if files := r.files(t); len(files) != 1 {
		t.Errorf("nothing may be deleted when the backup is missing, left %v", files)
	}
}

func TestBackupFileIsNamedByItsUTCStartTime(t *testing.T) {
	_, c, _ := backupJob(t, valuesFile("cluster-values.yaml")...)
	r := newJobRun(t)
	before := time.Now().UTC().Truncate(time.Second)
	if out, err := r.script(t, c["stamp"]); err != nil {
		t.Fatalf("stamp: %v\n%s", err, out)
	}
	after := time.Now().UTC()
	partial := r.backup(t, c["backup"])
	if strings.HasPrefix(filepath.Base(partial), "parkme-") {
		t.Errorf("the file being written (%s) must not look like a finished backup", filepath.Base(partial))
	}
	if out, err := r.script(t, c["retain"]); err != nil {
		t.Fatalf("retain: %v\n%s", err, out)
	}
	files := r.files(t)
	name := regexp.MustCompile(`^parkme-(\d{8}T\d{6}Z)\.pkb$`)
	if len(files) != 1 || !name.MatchString(files[0]) {
		t.Fatalf("want one file parkme-<UTC timestamp>.pkb, got %v", files)
	}
	stamp, err := time.Parse("20060102T150405Z", name.FindStringSubmatch(files[0])[1])
	if err != nil {
		t.Fatal(err)
	}
	if stamp.Before(before) || stamp.After(after) {
		t.Errorf("the name's time %s is not when the backup started (%s .. %s, UTC)", stamp, before, after)
	}
}

func TestBackupRetentionDeletesOnlyBackupsOlderThanRetentionDays(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		name string
		args []string
		days time.Duration
	}{
		{"default 30 days", valuesFile("cluster-values.yaml"), 30},
		{"7 days", append(valuesFile("cluster-values.yaml"), "--set", "backup.retentionDays=7"), 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, c, _ := backupJob(t, tc.args...)
			r := newJobRun(t)
			r.aged(t, "parkme-expired.pkb", tc.days*day+day)
			r.aged(t, "parkme-just-expired.pkb", tc.days*day+30*time.Minute)
			r.aged(t, "parkme-last-kept.pkb", tc.days*day-30*time.Minute)
			r.aged(t, "parkme-yesterday.pkb", day)
			r.aged(t, "notes.txt", 400*day)                         // not a backup
			r.aged(t, "parkme-manual.pkb.gz", 400*day)              // not named like one
			r.aged(t, ".partial-died-last-week.pkb", 7*day)         // a run that died
			r.aged(t, ".partial-still-running.pkb", 10*time.Minute) // a pod being replaced
			// What `parkme backup --out .partial-<pod>.pkb` writes before its rename.
			r.aged(t, "..partial-killed.pkb.partial-1", 2*day)
			r.aged(t, "..partial-running.pkb.partial-1", 10*time.Minute)
			if out, err := r.script(t, c["stamp"]); err != nil {
				t.Fatalf("stamp: %v\n%s", err, out)
			}
			r.backup(t, c["backup"])
			out, err := r.script(t, c["retain"])
			if err != nil {
				t.Fatalf("retain: %v\n%s", err, out)
			}
			var left []string
			var fresh int
			for _, f := range r.files(t) {
				if regexp.MustCompile(`^parkme-\d{8}T\d{6}Z\.pkb$`).MatchString(f) {
					fresh++
					continue
				}
				left = append(left, f)
			}
			want := []string{"..partial-running.pkb.partial-1", ".partial-still-running.pkb", "notes.txt", "parkme-last-kept.pkb", "parkme-manual.pkb.gz", "parkme-yesterday.pkb"}
			if fresh != 1 || strings.Join(left, ",") != strings.Join(want, ",") {
				t.Errorf("after retain: new backups %d (want 1), others %v, want %v\n%s", fresh, left, want, out)
			}
		})
	}
}

func TestBackupContainersAreRestricted(t *testing.T) {
	cj, c, _ := backupJob(t, valuesFile("cluster-values.yaml")...)
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	if !isTrue(pod.SecurityContext.RunAsNonRoot) || pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		t.Error("backup pod: want runAsNonRoot and the RuntimeDefault seccomp profile")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("backup pod: no API token, the job never talks to Kubernetes")
	}
	for name, ct := range c {
		sc := ct.SecurityContext
		if !isTrue(sc.RunAsNonRoot) || !isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil ||
			*sc.AllowPrivilegeEscalation || strings.Join(sc.Capabilities.Drop, ",") != "ALL" {
			t.Errorf("container %s: want non-root, read-only root, no privilege escalation, drop ALL; got %+v", name, sc)
		}
	}
}

// TestBackupContainerArgsAreTheRealCLIFlags runs the real `parkme` binary
// ($PARKME_BIN; helm/test.sh sets it to target/debug/parkme when that is
// built) with the backup container's args, as the kubelet expands them, on
// an empty data dir: the flags parse (clap would exit 2 with a usage error)
// and the command gets as far as looking for the store.
func TestBackupContainerArgsAreTheRealCLIFlags(t *testing.T) {
	bin := os.Getenv("PARKME_BIN")
	if bin == "" {
		t.Skip("PARKME_BIN is not set (cargo build -p parkme-gateway --bin parkme, then helm/test.sh)")
	}
	_, c, _ := backupJob(t, valuesFile("cluster-values.yaml")...)
	r := newJobRun(t)
	vars := r.vars(t, c["backup"])
	args := make([]string, len(c["backup"].Args))
	for i, a := range c["backup"].Args {
		args[i] = kubeExpand(a, vars)
	}
	data := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PARKME_STORAGE=embedded", "PARKME_DATA_DIR=" + data, "PARKME_LISTEN=0.0.0.0:8080"}
	out, err := cmd.CombinedOutput()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 1 || !strings.Contains(string(out), "holds no parkme store") {
		t.Fatalf("%s %q on an empty data dir: want exit 1 and \"holds no parkme store\", got %v:\n%s", bin, args, err, out)
	}
	if files := r.files(t); len(files) != 0 {
		t.Errorf("a backup that failed left %v", files)
	}
}
