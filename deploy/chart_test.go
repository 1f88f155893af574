//go:build chart

// Package deploy_test checks the Helm chart, the rendered manifests and the
// Dockerfiles. Run with `make chart-test`, which installs the pinned tools and
// passes them in HELM and KUBECONFORM; a missing tool fails the tests.
package deploy_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"debug/pe"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/akv-csi/provider/hack/chart/schemagen"
)

const (
	chartDir      = "helm/akv-provider"
	manifestsDir  = "manifests"
	kubeVersion   = "v1.34.4" // k8s.io/kubernetes module whose swagger.json gives the schemas
	driverVersion = "1.5.6"
	release       = "akv-provider"
	namespace     = "kube-system"
	// providerDS is the Linux DaemonSet's name: release + Azure's chart name, as Azure's chart.
	providerDS = release + "-csi-secrets-store-provider-azure"
)

// tool returns the path in the environment variable env, failing the test if
// it is unset or not executable.
func tool(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set; run `make chart-test` (it installs the pinned tools and sets it)", env)
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s=%s is not an executable file (err: %v)", env, p, err)
	}
	return p
}

func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

func mustRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

var (
	depsOnce sync.Once
	depsErr  error
)

// chartDeps packages the driver chart from its Go module into charts/, as
// `make chart-deps` does (same script).
func chartDeps(t *testing.T) {
	t.Helper()
	helm := tool(t, "HELM")
	depsOnce.Do(func() {
		out, err := run(t, "..", nil, "hack/chart/package-driver-chart.sh", helm, filepath.Join("deploy", chartDir, "charts"))
		if err != nil {
			depsErr = fmt.Errorf("package driver chart: %w\n%s", err, out)
		}
	})
	if depsErr != nil {
		t.Fatal(depsErr)
	}
}

// helmTemplate renders the chart with the given extra arguments.
func helmTemplate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	chartDeps(t)
	base := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	return run(t, ".", nil, tool(t, "HELM"), append(base, args...)...)
}

func TestHelmLintStrict(t *testing.T) {
	chartDeps(t)
	helm := tool(t, "HELM")
	for name, args := range map[string][]string{
		"defaults":        nil,
		"windows":         {"--set", "windows.enabled=true"},
		"driver":          {"--set", "secrets-store-csi-driver.install=true"},
		"everything":      {"--set", "windows.enabled=true,secrets-store-csi-driver.install=true,secrets-store-csi-driver.windows.enabled=true,caBundle.configMapName=corp-ca"},
		"no-linux-no-sa":  {"--set", "linux.enabled=false,serviceAccount.create=false"},
		"image-by-digest": {"--set", "linux.image.digest=sha256:" + strings.Repeat("ab", 32)},
		"azure-values":    {"-f", "testdata/upstream-values.yaml"},
		"pod-network":     {"--set", "linux.hostNetwork=false"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := mustRun(t, ".", nil, helm, append([]string{"lint", "--strict", chartDir}, args...)...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint output:\n%s", out)
			}
		})
	}
}

var (
	schemaOnce sync.Once
	schemaDir  string
	schemaErr  error
)

// kubeSchemas generates kubeconform schemas from the swagger.json in the
// k8s.io/kubernetes module zip (downloaded through the module proxy once).
func kubeSchemas(t *testing.T) string {
	t.Helper()
	schemaOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "akv-provider-chart-test", "schemas-"+kubeVersion)
		if _, err := os.Stat(filepath.Join(dir, "daemonset-apps-v1.json")); err == nil {
			schemaDir = dir
			return
		}
		out, err := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+kubeVersion).Output()
		if err != nil {
			schemaErr = fmt.Errorf("go mod download k8s.io/kubernetes@%s: %w", kubeVersion, err)
			return
		}
		var mod struct{ Dir string }
		if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
			schemaErr = fmt.Errorf("go mod download output %q: %w", out, err)
			return
		}
		tmp := dir + ".tmp"
		_ = os.RemoveAll(tmp)
		if _, err := schemagen.Generate(filepath.Join(mod.Dir, "api", "openapi-spec", "swagger.json"), tmp, true); err != nil {
			schemaErr = err
			return
		}
		_ = os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			schemaErr = err
			return
		}
		schemaDir = dir
	})
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schemaDir
}

func kubeconform(t *testing.T, manifests string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(f, []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	loc := filepath.Join(kubeSchemas(t), "{{ .ResourceKind }}{{ .KindSuffix }}.json")
	return run(t, ".", nil, tool(t, "KUBECONFORM"), "-strict", "-summary", "-schema-location", loc, f)
}

func TestKubeconform(t *testing.T) {
	kubeSchemas(t)
	for name, args := range map[string][]string{
		"defaults":   nil,
		"windows":    {"--set", "windows.enabled=true"},
		"driver":     {"--include-crds", "--set", "secrets-store-csi-driver.install=true"},
		"everything": {"--include-crds", "-f", "testdata/all-values.yaml"},
		"ca-secret":  {"--set", "caBundle.secretName=corp-ca,caBundle.key=bundle.pem"},
		"azure":      {"--include-crds", "-f", "testdata/upstream-values.yaml"},
		"on-delete":  {"--set", "windows.enabled=true,linux.updateStrategy.type=OnDelete,windows.updateStrategy.type=OnDelete"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rendered, err := helmTemplate(t, args...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, rendered)
			}
			out, err := kubeconform(t, rendered)
			if err != nil || !strings.Contains(out, "Invalid: 0, Errors: 0, Skipped: 0") {
				t.Fatalf("kubeconform (err %v):\n%s", err, out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
	for _, m := range []string{"provider-azure-installer.yaml", "provider-azure-installer-windows.yaml"} {
		t.Run("manifests/"+m, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(manifestsDir, m))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := kubeconform(t, string(data)); err != nil {
				t.Fatalf("kubeconform: %v\n%s", err, out)
			}
			// Each file applies alone, as Azure's do: its DaemonSet's ServiceAccount is in it.
			accounts := map[string]bool{}
			var used []string
			for _, o := range parse(t, string(data)) {
				switch o.Kind {
				case "ServiceAccount":
					accounts[fmt.Sprint(o.Metadata["name"])] = true
				case "DaemonSet":
					tmpl, _ := o.Spec["template"].(map[string]any)
					podSpec, _ := tmpl["spec"].(map[string]any)
					used = append(used, fmt.Sprint(podSpec["serviceAccountName"]))
				}
			}
			if len(used) != 1 || !accounts[used[0]] {
				t.Errorf("DaemonSets run as %v; ServiceAccounts in the file: %v", used, accounts)
			}
		})
	}
}

// The schemas must really bite: a typo, a wrong type and a null where the
// API allows one must be told apart.
func TestKubeconformCatchesMistakes(t *testing.T) {
	rendered, err := helmTemplate(t)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, rendered)
	}
	for name, tc := range map[string]struct{ from, to string }{
		"unknown field": {"imagePullPolicy:", "imagePullPolicyy:"},
		"wrong type":    {"containerPort: 8989", "containerPort: \"x\""},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(rendered, tc.from, tc.to, 1)
			if bad == rendered {
				t.Fatalf("%q not found in the rendered chart", tc.from)
			}
			if out, err := kubeconform(t, bad); err == nil {
				t.Fatalf("kubeconform accepted a manifest with %s:\n%s", name, out)
			}
		})
	}
	ok := strings.Replace(rendered, "  namespace: kube-system\n", "  namespace: kube-system\n  creationTimestamp: null\n", 1)
	if out, err := kubeconform(t, ok+"---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailable: 1}\n"); err != nil {
		t.Fatalf("kubeconform rejected null / int-or-string:\n%s", out)
	}
}

type object struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       map[string]any `json:"spec"`
	raw        []byte
}

func parse(t *testing.T, manifests string) []object {
	t.Helper()
	var objs []object
	for _, doc := range strings.Split(manifests, "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("parse rendered YAML: %v\n%s", err, doc)
		}
		if string(j) == "null" {
			continue
		}
		var o object
		if err := json.Unmarshal(j, &o); err != nil {
			t.Fatal(err)
		}
		o.raw = j
		objs = append(objs, o)
	}
	return objs
}

type daemonSet struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector       map[string]any `json:"selector"`
		UpdateStrategy map[string]any `json:"updateStrategy"`
		Template       struct {
			Metadata struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				ServiceAccountName           string              `json:"serviceAccountName"`
				HostNetwork                  bool                `json:"hostNetwork"`
				DNSPolicy                    string              `json:"dnsPolicy"`
				AutomountServiceAccountToken *bool               `json:"automountServiceAccountToken"`
				ImagePullSecrets             []map[string]string `json:"imagePullSecrets"`
				PriorityClassName            string              `json:"priorityClassName"`
				SecurityContext              map[string]any      `json:"securityContext"`
				NodeSelector                 map[string]string   `json:"nodeSelector"`
				Tolerations                  []map[string]any    `json:"tolerations"`
				Affinity                     map[string]any      `json:"affinity"`
				Volumes                      []map[string]any    `json:"volumes"`
				Containers                   []struct {
					Name            string           `json:"name"`
					Image           string           `json:"image"`
					ImagePullPolicy string           `json:"imagePullPolicy"`
					Args            []string         `json:"args"`
					Ports           []map[string]any `json:"ports"`
					LivenessProbe   map[string]any   `json:"livenessProbe"`
					Env             []map[string]any `json:"env"`
					Resources       map[string]any   `json:"resources"`
					SecurityContext map[string]any   `json:"securityContext"`
					VolumeMounts    []map[string]any `json:"volumeMounts"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

func findDaemonSet(t *testing.T, objs []object, name string) daemonSet {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "DaemonSet" && o.Metadata["name"] == name {
			var ds daemonSet
			if err := json.Unmarshal(o.raw, &ds); err != nil {
				t.Fatal(err)
			}
			if len(ds.Spec.Template.Spec.Containers) != 1 {
				t.Fatalf("DaemonSet %s has %d containers, want 1", name, len(ds.Spec.Template.Spec.Containers))
			}
			return ds
		}
	}
	t.Fatalf("no DaemonSet %q rendered", name)
	return daemonSet{}
}

// jsonOf normalises a Go literal to what the JSON decoder produces.
func jsonOf(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(jsonOf(t, want), jsonOf(t, got)); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

type m = map[string]any

// has reports whether objs hold an object of kind named name ("" = any name).
func has(objs []object, kind, name string) bool {
	for _, o := range objs {
		if o.Kind == kind && (name == "" || o.Metadata["name"] == name) {
			return true
		}
	}
	return false
}

// clusterCA and clusterCAMount are the cluster's CA (only: no token) at the service account
// path, which identity binding reads, in every provider pod.
var (
	clusterCAMount = m{"name": "cluster-ca", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
	clusterCA      = m{"name": "cluster-ca", "projected": m{"sources": []m{{"configMap": m{"name": "kube-root-ca.crt", "optional": true,
		"items": []m{{"key": "ca.crt", "path": "ca.crt"}}}}}}}
)

func TestDaemonSetDefaults(t *testing.T) {
	out, err := helmTemplate(t)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := parse(t, out)
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Kind)
		if strings.Contains(o.Kind, "Role") {
			t.Errorf("the chart renders %s; the provider needs no RBAC", o.Kind)
		}
	}
	sort.Strings(kinds)
	diff(t, "kinds", []string{"DaemonSet", "ServiceAccount"}, kinds)

	ds := findDaemonSet(t, objs, providerDS)
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	diff(t, "args", []string{
		"--endpoint=unix:///provider/azure.sock",
		"--log-format-json=true",
		"-v=0",
		"--healthz-port=8989",
		"--healthz-path=/healthz",
		"--healthz-timeout=5s",
		"--prometheus-port=8898",
		"--construct-pem-chain=true",
		"--write-cert-and-key-in-separate-files=false",
		"--cloud-name=AzurePublicCloud",
		"--parallel-fetches=16",
		"--result-cache-ttl=10s",
		"--vault-rate-limit=200",
		"--vault-burst=400",
		"--max-concurrent-mounts=16",
		"--managed-identity-namespaces=*",
		"--allow-managed-identity-selections=false",
		"--healthz-bind-address=127.0.0.1",
	}, c.Args)
	diff(t, "image", "ghcr.io/akv-csi/provider:v0.1.0", c.Image)
	diff(t, "ports", []m{
		{"name": "healthz", "containerPort": 8989, "protocol": "TCP"},
		{"name": "metrics", "containerPort": 8898, "protocol": "TCP"},
	}, c.Ports)
	diff(t, "livenessProbe", m{
		"httpGet":             m{"host": "127.0.0.1", "path": "/healthz", "port": 8989},
		"initialDelaySeconds": 5, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3,
	}, c.LivenessProbe)
	diff(t, "container securityContext", m{
		"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false,
		"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
		"capabilities":   m{"drop": []string{"ALL"}},
		"seccompProfile": m{"type": "RuntimeDefault"},
	}, c.SecurityContext)
	diff(t, "pod securityContext", m{"seccompProfile": m{"type": "RuntimeDefault"}}, pod.SecurityContext)
	diff(t, "hostNetwork", true, pod.HostNetwork)
	diff(t, "dnsPolicy", "ClusterFirstWithHostNet", pod.DNSPolicy)
	diff(t, "automountServiceAccountToken", false, pod.AutomountServiceAccountToken)
	diff(t, "serviceAccountName", "csi-secrets-store-provider-azure", pod.ServiceAccountName) // Azure's
	diff(t, "priorityClassName", "system-node-critical", pod.PriorityClassName)
	diff(t, "nodeSelector", m{"kubernetes.io/os": "linux"}, pod.NodeSelector)
	diff(t, "tolerations", []m{{"operator": "Exists"}}, pod.Tolerations)
	diff(t, "affinity", m{"nodeAffinity": m{"requiredDuringSchedulingIgnoredDuringExecution": m{
		"nodeSelectorTerms": []m{{"matchExpressions": []m{{"key": "type", "operator": "NotIn", "values": []string{"virtual-kubelet"}}}}},
	}}}, pod.Affinity)
	diff(t, "volumes", []m{{"name": "provider-vol", "hostPath": m{"path": "/var/run/secrets-store-csi-providers", "type": "DirectoryOrCreate"}}, clusterCA}, pod.Volumes)
	diff(t, "volumeMounts", []m{{"name": "provider-vol", "mountPath": "/provider"}, clusterCAMount}, c.VolumeMounts)
	diff(t, "env", []m{{"name": "GOMEMLIMIT", "value": "241591910"}}, c.Env) // 90% of 256Mi
	diff(t, "updateStrategy", m{"type": "RollingUpdate", "rollingUpdate": m{"maxUnavailable": 1}}, ds.Spec.UpdateStrategy)
	for _, o := range objs {
		if o.Kind == "ServiceAccount" {
			var sa struct {
				Automount *bool `json:"automountServiceAccountToken"`
			}
			_ = json.Unmarshal(o.raw, &sa)
			diff(t, "ServiceAccount automountServiceAccountToken", false, sa.Automount)
		}
	}
}

// TestDaemonSetFromValues renders testdata/all-values.yaml, which sets every
// value away from its default, and checks each one lands where it should.
func TestDaemonSetFromValues(t *testing.T) {
	out, err := helmTemplate(t, "-f", "testdata/all-values.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := parse(t, out)
	ds := findDaemonSet(t, objs, "kv")
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	diff(t, "args", []string{
		"--endpoint=unix:///provider/kv_1.sock",
		"--log-format-json=false",
		"-v=4",
		"--healthz-port=9001",
		"--healthz-path=/livez",
		"--healthz-timeout=2500ms",
		"--prometheus-port=9002",
		"--construct-pem-chain=false",
		"--write-cert-and-key-in-separate-files=true",
		"--cloud-name=AzureUSGovernmentCloud",
		"--parallel-fetches=24",
		"--result-cache-ttl=2500ms",
		"--vault-rate-limit=50.5",
		"--vault-burst=64",
		"--max-concurrent-mounts=8",
		"--managed-identity-namespaces=team-a,team-b",
		"--allow-managed-identity-selections=true",
		"--healthz-bind-address=0.0.0.0",
		"--metrics-bind-address=10.1.2.3",
		"--custom-user-agent=team-a/2",
	}, c.Args)
	diff(t, "hostNetwork", false, pod.HostNetwork)
	diff(t, "dnsPolicy", "Default", pod.DNSPolicy)
	diff(t, "image", "registry.example.com:5000/team/akv@sha256:"+strings.Repeat("0f", 32), c.Image)
	diff(t, "pullPolicy", "Always", c.ImagePullPolicy)
	diff(t, "ports", []m{
		{"name": "healthz", "containerPort": 9001, "protocol": "TCP"},
		{"name": "metrics", "containerPort": 9002, "protocol": "TCP"},
	}, c.Ports)
	diff(t, "livenessProbe", m{
		"httpGet":             m{"path": "/livez", "port": 9001},
		"initialDelaySeconds": 5, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3,
	}, c.LivenessProbe)
	diff(t, "securityContext", m{
		"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false,
		"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
		"capabilities":   m{"drop": []string{"ALL"}},
		"seccompProfile": m{"type": "RuntimeDefault"},
	}, c.SecurityContext)
	diff(t, "env", []m{
		{"name": "GOMEMLIMIT", "value": "120795955"}, // 90% of 128Mi
		{"name": "SSL_CERT_FILE", "value": "/etc/akv-provider/ca/ca.crt"},
		{"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"},
		{"name": "NO_PROXY", "value": "10.0.0.0/8,.svc,.cluster.local"},
	}, c.Env)
	diff(t, "resources", m{"requests": m{"cpu": "10m", "memory": "64Mi"}, "limits": m{"cpu": 1, "memory": "128Mi"}}, c.Resources)
	diff(t, "volumeMounts", []m{
		{"name": "provider-vol", "mountPath": "/provider"},
		clusterCAMount,
		{"name": "ca-bundle", "mountPath": "/etc/akv-provider/ca", "readOnly": true},
		{"name": "scratch", "mountPath": "/scratch"},
	}, c.VolumeMounts)
	diff(t, "volumes", []m{
		{"name": "provider-vol", "hostPath": m{"path": "/etc/kubernetes/secrets-store-csi-providers", "type": "DirectoryOrCreate"}},
		clusterCA,
		{"name": "ca-bundle", "configMap": m{"name": "corp-ca", "items": []m{{"key": "root.pem", "path": "ca.crt"}}}},
		{"name": "scratch", "emptyDir": m{}},
	}, pod.Volumes)
	diff(t, "serviceAccountName", "akv-sa", pod.ServiceAccountName)
	diff(t, "imagePullSecrets", []m{{"name": "regcred"}}, pod.ImagePullSecrets)
	diff(t, "priorityClassName", "high", pod.PriorityClassName)
	diff(t, "nodeSelector", m{"kubernetes.io/os": "linux", "pool": "system"}, pod.NodeSelector)
	diff(t, "tolerations", []m{{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}}, pod.Tolerations)
	diff(t, "affinity", m{"nodeAffinity": m{"requiredDuringSchedulingIgnoredDuringExecution": m{
		"nodeSelectorTerms": []m{{"matchExpressions": []m{{"key": "pool", "operator": "In", "values": []string{"system"}}}}},
	}}}, pod.Affinity)
	diff(t, "updateStrategy", m{"type": "RollingUpdate", "rollingUpdate": m{"maxUnavailable": "20%"}}, ds.Spec.UpdateStrategy)
	if got := ds.Spec.Template.Metadata.Labels["team"]; got != "secrets" {
		t.Errorf("pod label team = %q, want secrets", got)
	}
	diff(t, "podAnnotations", map[string]string{"prometheus.io/scrape": "true"}, ds.Spec.Template.Metadata.Annotations)

	// Windows: same options, its own block.
	w := findDaemonSet(t, objs, "kv-windows")
	wp := w.Spec.Template.Spec
	wc := wp.Containers[0]
	diff(t, "windows args", []string{
		`--endpoint=unix://C:\provider\kv_1.sock`,
		"--log-format-json=false",
		"-v=4",
		"--healthz-port=9101",
		"--healthz-path=/healthz",
		"--healthz-timeout=5s",
		"--prometheus-port=9102",
		"--construct-pem-chain=false",
		"--write-cert-and-key-in-separate-files=true",
		"--cloud-name=AzureUSGovernmentCloud",
		"--parallel-fetches=24",
		"--result-cache-ttl=2500ms",
		"--vault-rate-limit=50.5",
		"--vault-burst=64",
		"--max-concurrent-mounts=8",
		"--managed-identity-namespaces=team-a,team-b",
		"--allow-managed-identity-selections=true",
		"--healthz-bind-address=0.0.0.0",
		"--metrics-bind-address=10.1.2.4",
		"--custom-user-agent=team-a-win/2",
	}, wc.Args)
	diff(t, "windows hostNetwork", false, wp.HostNetwork)
	diff(t, "windows dnsPolicy", "", wp.DNSPolicy)
	diff(t, "windows image", "registry.example.com:5000/team/akv:v9-windows", wc.Image)
	diff(t, "windows ports", []m{
		{"name": "healthz", "containerPort": 9101, "protocol": "TCP"},
		{"name": "metrics", "containerPort": 9102, "protocol": "TCP"},
	}, wc.Ports)
	diff(t, "windows securityContext", m{"windowsOptions": m{"runAsUserName": "ContainerAdministrator"}}, wc.SecurityContext)
	diff(t, "windows volumes", []m{{"name": "provider-vol", "hostPath": m{"path": `D:\csi\providers`, "type": "DirectoryOrCreate"}}, clusterCA}, wp.Volumes)
	diff(t, "windows volumeMounts", []m{{"name": "provider-vol", "mountPath": `C:\provider`}, clusterCAMount}, wc.VolumeMounts)
	diff(t, "windows env", []m{{"name": "GOMEMLIMIT", "value": "377487360"}, {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}}, wc.Env)
	diff(t, "windows nodeSelector", m{"kubernetes.io/os": "windows"}, wp.NodeSelector)
	diff(t, "windows automount", false, wp.AutomountServiceAccountToken)

	// The driver dependency: tokenRequests and the providers directory.
	var csiDriver, driverDS bool
	for _, o := range objs {
		switch {
		case o.Kind == "CSIDriver":
			csiDriver = true
			diff(t, "CSIDriver tokenRequests", []m{{"audience": "api://AzureADTokenExchange"}, {"audience": "api://AKSIdentityBinding"}}, o.Spec["tokenRequests"])
		case o.Kind == "DaemonSet" && o.Metadata["name"] == "secrets-store-csi-driver":
			driverDS = true
			if !bytes.Contains(o.raw, []byte(`"path":"/etc/kubernetes/secrets-store-csi-providers"`)) {
				t.Errorf("driver DaemonSet does not mount the provider's directory: %s", o.raw)
			}
		}
	}
	if !csiDriver || !driverDS {
		t.Errorf("driver objects missing: CSIDriver %v, driver DaemonSet %v", csiDriver, driverDS)
	}
}

func TestDriverDependencyValues(t *testing.T) {
	out, err := helmTemplate(t, "--set", "secrets-store-csi-driver.install=true")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := parse(t, out)
	found := false
	for _, o := range objs {
		if o.Kind == "CSIDriver" {
			found = true
			diff(t, "tokenRequests", []m{{"audience": "api://AzureADTokenExchange"}, {"audience": "api://AKSIdentityBinding"}}, o.Spec["tokenRequests"])
		}
		if o.Kind == "DaemonSet" && o.Metadata["name"] == "secrets-store-csi-driver" &&
			!bytes.Contains(o.raw, []byte(`"path":"/var/run/secrets-store-csi-providers"`)) {
			t.Errorf("driver does not use /var/run/secrets-store-csi-providers: %s", o.raw)
		}
	}
	if !found {
		t.Fatal("no CSIDriver rendered with secrets-store-csi-driver.install=true")
	}
	// Off by default: none of the driver's objects.
	out, err = helmTemplate(t)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "kind: CSIDriver") {
		t.Error("the driver is rendered although secrets-store-csi-driver.install defaults to false")
	}
}

// schemaNode is the part of JSON schema the chart uses.
type schemaNode struct {
	Type                 any                    `json:"type"`
	Properties           map[string]*schemaNode `json:"properties"`
	AdditionalProperties any                    `json:"additionalProperties"`
	Items                *schemaNode            `json:"items"`
	Description          string                 `json:"description"`
	Enum                 []any                  `json:"enum"`
	Pattern              string                 `json:"pattern"`
	Minimum              *float64               `json:"minimum"`
	Maximum              *float64               `json:"maximum"`
}

func (n *schemaNode) types() []string {
	switch v := n.Type.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

func loadSchema(t *testing.T) *schemaNode {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s schemaNode
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

type leaf struct {
	path []string
	node *schemaNode
}

// walk lists every property of the schema, depth first, in key order.
func walk(n *schemaNode, prefix []string, fn func(leaf)) {
	keys := make([]string, 0, len(n.Properties))
	for k := range n.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := append(slices.Clone(prefix), k)
		fn(leaf{p, n.Properties[k]})
		walk(n.Properties[k], p, fn)
	}
}

// wrongValue is a JSON value of a type the node does not allow, preferring
// the likely mistakes: a string where a number or boolean belongs, a number
// where a string belongs.
func wrongValue(types []string) (string, bool) {
	for _, cand := range []struct{ typ, val string }{
		{"string", `"not-of-this-type"`},
		{"integer", `7`},
		{"boolean", `true`},
		{"object", `{"not":"of this type"}`},
	} {
		if slices.Contains(types, cand.typ) || (cand.typ == "integer" && slices.Contains(types, "number")) {
			continue
		}
		return cand.val, true
	}
	return "", false
}

func TestSchemaRejectsWrongTypes(t *testing.T) {
	s := loadSchema(t)
	count := 0
	walk(s, nil, func(l leaf) {
		types := l.node.types()
		if len(types) == 0 {
			t.Errorf("%s has no type in values.schema.json", strings.Join(l.path, "."))
			return
		}
		bad, ok := wrongValue(types)
		if !ok {
			return
		}
		count++
		key := strings.Join(l.path, ".")
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			out, err := helmTemplate(t, "--set-json", key+"="+bad)
			if err == nil {
				t.Fatalf("helm template accepted %s=%s", key, bad)
			}
			// A subchart's whole value block is rejected while merging, before the schema.
			if !strings.Contains(out, "values don't meet the specifications of the schema") && key != "secrets-store-csi-driver" {
				t.Fatalf("%s=%s failed, but not in the schema:\n%s", key, bad, out)
			}
		})
	})
	if count < 60 {
		t.Errorf("only %d typed values tested", count)
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	cases := []struct {
		set, want string
	}{
		{"socketName=azure", "schema"},
		{"socketName=../azure.sock", "schema"},
		{"socketName=" + strings.Repeat("a", 31) + ".sock", "schema"},
		{"linux.image.pullPolicy=Sometimes", "schema"},
		{"linux.image.digest=latest", "schema"},
		{"linux.image.tag=v1 2", "schema"},
		{"linux.image.repository=", "schema"},
		{"linux.healthzPort=0", "schema"},
		{"linux.metricsPort=65536", "schema"},
		{"linux.healthzPath=healthz", "schema"},
		{"linux.healthzTimeout=5", "schema"},
		{"linux.providersDir=var/run", "schema"},
		{"windows.providersDir=/var/run", "schema"},
		{"windows.updateStrategy.type=Recreate", "schema"},
		{"logVerbosity=-1", "schema"},
		{"cloudName=Azure Public", "schema"},
		{"nameOverride=Bad_Name", "schema"},
		{"linux.imageTag=v1", "schema"}, // unknown key
		{"linux.dnsPolicy=ClusterFirstWithHostNetwork", "schema"},
		{"linux.hostNetwork=", "schema"}, // ours, not Azure's: strictly boolean
		{"windows.enabled=maybe", "schema"},
		{"logFormatJSON=yes", "schema"},
		{"rbac.instal=false", "schema"}, // typo
		{"metricsAddr=abc", "schema"},
		{"metricsAddr=70000", "schema"},
		{"metricsAddr=:0", "metricsAddr \":0\": want a port number"},
		{"metricsAddr=8989", "must differ"},
		{"linux.metricsPort=8989", "must differ"},
		{"linux.customUserAgent=tab\there", "schema"},
		{"secrets-store-csi-driver.install=", "schema"}, // helm would read "" as install
		{"linux.resources.request.cpu=1", "schema"},     // typo
		{"unknownTopLevel=1", "schema"},
		{"caBundle.configMapName=a,caBundle.secretName=b", "set configMapName or secretName, not both"},
		{"secrets-store-csi-driver.install=true,linux.providersDir=/other", "must equal linux.providersDir"},
		// Two providers on one node would share one socket path.
		{"linux.updateStrategy.rollingUpdate.maxSurge=1", "schema"},
		{"windows.updateStrategy.rollingUpdate.maxSurge=10%", "schema"},
		{"linux.hostNetwork=false,linux.healthzBindAddress=127.0.0.1", "reaches only with hostNetwork: true"},
		{"maxConcurrentMounts=0", "schema"},
		{"managedIdentity.namespaces={Team_A}", "schema"},
		{`secrets-store-csi-driver.install=true,windows.enabled=true,secrets-store-csi-driver.windows.enabled=true,secrets-store-csi-driver.windows.providersDir=C:\\k\\other`, "must equal windows.providersDir"},
	}
	for _, tc := range cases {
		t.Run(tc.set, func(t *testing.T) {
			t.Parallel()
			out, err := helmTemplate(t, "--set", tc.set)
			if err == nil {
				t.Fatalf("helm template accepted --set %s", tc.set)
			}
			want := tc.want
			if want == "schema" {
				want = "values don't meet the specifications of the schema"
			}
			if !strings.Contains(out, want) {
				t.Fatalf("--set %s: want %q in:\n%s", tc.set, want, out)
			}
		})
	}
	// Edge values that must still be accepted.
	for _, set := range []string{"socketName=" + strings.Repeat("a", 30) + ".sock", "socketName=x-y_Z.sock", "linux.healthzTimeout=1m30s",
		"metricsAddr=:9000", "metricsAddr=9000", "linux.hostNetwork=false", "linux.dnsPolicy=None", "linux.customUserAgent=",
		"linux.updateStrategy.rollingUpdate.maxSurge=0", "managedIdentity.namespaces={*}",
		// The driver's Windows DaemonSet is not rendered (its windows.enabled is false): its providersDir does not matter.
		`secrets-store-csi-driver.install=true,windows.enabled=true,secrets-store-csi-driver.windows.providersDir=C:\\k\\other`,
		"secrets-store-csi-driver.install=true,secrets-store-csi-driver.linux.enabled=false,linux.providersDir=/other"} {
		if out, err := helmTemplate(t, "--set", set); err != nil {
			t.Errorf("--set %s rejected:\n%s", set, out)
		}
	}
}

// Every value in values.yaml is in the schema and every schema property (but
// helm's "global") has a default in values.yaml, except pass-through maps.
func TestSchemaCoversValues(t *testing.T) {
	s := loadSchema(t)
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	var check func(v any, n *schemaNode, path string)
	check = func(v any, n *schemaNode, path string) {
		obj, ok := v.(map[string]any)
		if !ok || len(n.Properties) == 0 {
			return
		}
		for k, sub := range obj {
			p := strings.TrimPrefix(path+"."+k, ".")
			child, ok := n.Properties[k]
			if !ok {
				if n.AdditionalProperties == false {
					t.Errorf("values.yaml has %s, the schema does not", p)
				}
				continue
			}
			check(sub, child, p)
		}
		for k, child := range n.Properties {
			if _, ok := obj[k]; !ok && k != "global" && child.AdditionalProperties != true {
				optional := strings.HasSuffix(path, ".rollingUpdate") || strings.HasSuffix(path, ".resources")
				if n.AdditionalProperties == false && !optional {
					t.Errorf("schema has %s, values.yaml gives no default", strings.TrimPrefix(path+"."+k, "."))
				}
			}
		}
	}
	check(values, s, "")
}

const (
	tableBegin = "<!-- values-table:begin (generated from values.schema.json and values.yaml; UPDATE_README=1 make chart-test) -->"
	tableEnd   = "<!-- values-table:end -->"
)

// valuesTable renders the README's values table from the schema (types and
// descriptions) and values.yaml (defaults).
func valuesTable(t *testing.T) string {
	t.Helper()
	s := loadSchema(t)
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	lookup := func(path []string) (any, bool) {
		var cur any = values
		for _, k := range path {
			mm, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = mm[k]; !ok {
				return nil, false
			}
		}
		return cur, true
	}
	var b strings.Builder
	b.WriteString("| Value | Type | Default | Description |\n|---|---|---|---|\n")
	walk(s, nil, func(l leaf) {
		if l.path[0] == "global" {
			return
		}
		// Expand objects whose properties are listed; list the rest as leaves.
		if len(l.node.Properties) > 0 && l.node.AdditionalProperties == false {
			return
		}
		if len(l.node.Properties) > 0 && len(l.path) > 1 && l.path[0] == "secrets-store-csi-driver" {
			return
		}
		if l.path[0] == "secrets-store-csi-driver" && len(l.path) == 1 {
			return
		}
		def := "—"
		if v, ok := lookup(l.path); ok {
			j, _ := json.Marshal(v)
			def = "`" + strings.ReplaceAll(string(j), "|", `\|`) + "`"
		}
		desc := l.node.Description
		if len(l.node.Enum) > 0 {
			var e []string
			for _, x := range l.node.Enum {
				if x == "" {
					x = `""`
				}
				e = append(e, fmt.Sprint(x))
			}
			desc += " One of " + strings.Join(e, ", ") + "."
		}
		if l.node.Pattern != "" {
			desc += " Pattern `" + strings.ReplaceAll(l.node.Pattern, "|", `\|`) + "`."
		}
		if l.node.Minimum != nil && l.node.Maximum != nil {
			desc += fmt.Sprintf(" %g–%g.", *l.node.Minimum, *l.node.Maximum)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", strings.Join(l.path, "."), strings.Join(l.node.types(), ", "), def, strings.TrimSpace(desc))
	})
	return b.String()
}

func TestReadmeValuesTable(t *testing.T) {
	readme := filepath.Join(chartDir, "README.md")
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i, j := strings.Index(text, tableBegin), strings.Index(text, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q section", readme, tableBegin, tableEnd)
	}
	want := text[:i+len(tableBegin)] + "\n" + valuesTable(t) + text[j:]
	if want == text {
		return
	}
	if os.Getenv("UPDATE_README") == "1" {
		if err := os.WriteFile(readme, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the values table in %s", readme)
		return
	}
	t.Errorf("the values table in %s is stale; run UPDATE_README=1 make chart-test\n%s", readme, cmp.Diff(text, want))
}

// notesChart copies the chart with NOTES.txt wrapped in a YAML block scalar as
// an ordinary template, because helm template does not render NOTES.txt.
func notesChart(t *testing.T) string {
	t.Helper()
	chartDeps(t)
	tmp := filepath.Join(t.TempDir(), "akv-provider")
	mustRun(t, ".", nil, "cp", "-r", chartDir, tmp)
	notes, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	wrapped := "notes: |\n  " + strings.ReplaceAll(string(notes), "\n", "\n  ") + "\n"
	if err := os.WriteFile(filepath.Join(tmp, "templates", "notes-as-yaml.yaml"), []byte(wrapped), 0o600); err != nil {
		t.Fatal(err)
	}
	return tmp
}

// renderNotes renders the notes of the chart copy made by notesChart.
func renderNotes(t *testing.T, chart string, args ...string) string {
	t.Helper()
	base := []string{"template", release, chart, "--kube-version", kubeVersion, "--show-only", "templates/notes-as-yaml.yaml"}
	out := mustRun(t, ".", nil, tool(t, "HELM"), append(base, args...)...)
	var doc struct{ Notes string }
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return doc.Notes
}

func TestNotesRender(t *testing.T) {
	chart := notesChart(t)
	for set, want := range map[string]string{
		"secrets-store-csi-driver.install=false": "is NOT part of this release",
		"secrets-store-csi-driver.install=true":  "was installed by this release",
		"windows.enabled=true":                   `C:\k\secrets-store-csi-providers (Windows)`,
		"linux.hostNetwork=true":                 "ports 8989 (health) and 8898 (metrics)\nmust be free on every Linux node",
	} {
		notes := renderNotes(t, chart, "--set", set)
		for _, w := range []string{want, "provider: azure", "Next steps"} {
			if !strings.Contains(notes, w) {
				t.Errorf("--set %s: NOTES lack %q:\n%s", set, w, notes)
			}
		}
	}
	if notes := renderNotes(t, chart, "--set", "linux.hostNetwork=false"); strings.Contains(notes, "node's network") {
		t.Errorf("NOTES mention the node's network with linux.hostNetwork=false:\n%s", notes)
	}
}

// Azure's values that its chart renders wrongly (constructPEMChain=false renders no flag,
// metricsAddr sets only the container port) act here as named, and the notes say what changes.
func TestNotesValuesThatDiffer(t *testing.T) {
	chart := notesChart(t)
	const header = "Values that act differently from Azure's chart"
	for set, want := range map[string]string{
		"constructPEMChain=false": "constructPEMChain=false: PEM certificate chains keep Key Vault's stored order",
		"constructPEMChain=":      "constructPEMChain=false",
		"metricsAddr=:9000":       "metricsAddr=:9000: the provider serves /metrics on port 9000",
	} {
		if notes := renderNotes(t, chart, "--set", set); !strings.Contains(notes, header) || !strings.Contains(notes, want) {
			t.Errorf("--set %s: NOTES lack %q:\n%s", set, want, notes)
		}
	}
	for _, set := range []string{"constructPEMChain=true", "metricsAddr=8898", "metricsAddr=:8898", "logVerbosity=1"} {
		if notes := renderNotes(t, chart, "--set", set); strings.Contains(notes, header) {
			t.Errorf("--set %s: NOTES list a value that acts as in Azure's chart:\n%s", set, notes)
		}
	}
}

// Azure's values that mean nothing here are accepted, and the install notes
// name each one that is set, with the reason; none when they are not set.
func TestNotesIgnoredValues(t *testing.T) {
	chart := notesChart(t)
	ignored := map[string]string{
		"rbac.pspEnabled":        "PodSecurityPolicy was removed in Kubernetes 1.25",
		"enableArcExtension":     "Azure Arc extension",
		"linux.kubeletRootDir":   "secrets-store-csi-driver.linux.kubeletRootDir",
		"windows.kubeletRootDir": "secrets-store-csi-driver.windows.kubeletRootDir",
	}
	const header = "Ignored values (accepted for compatibility with Azure's chart"
	for name, args := range map[string][]string{
		"defaults":       nil,
		"set to default": {"--set", "rbac.pspEnabled=false,enableArcExtension=false,linux.kubeletRootDir=,windows.kubeletRootDir="},
		"set empty":      {"--set", "rbac.pspEnabled=,enableArcExtension="},
	} {
		if notes := renderNotes(t, chart, args...); strings.Contains(notes, header) {
			t.Errorf("%s: NOTES list ignored values although none is set:\n%s", name, notes)
		}
	}
	// Each one alone names only itself.
	for key, why := range ignored {
		value := "true"
		if strings.HasSuffix(key, "kubeletRootDir") {
			value = "/var/lib/kubelet"
		}
		notes := renderNotes(t, chart, "--set", key+"="+value)
		for other := range ignored {
			if got := strings.Contains(notes, "  - "+other+": "); got != (other == key) {
				t.Errorf("--set %s=%s: NOTES mention %s: %v, want %v:\n%s", key, value, other, got, other == key, notes)
			}
		}
		if !strings.Contains(notes, header) || !strings.Contains(notes, why) {
			t.Errorf("--set %s=%s: NOTES lack %q / %q:\n%s", key, value, header, why, notes)
		}
	}
	// Azure's own values file sets all four.
	notes := renderNotes(t, chart, "-f", "testdata/upstream-values.yaml")
	for key, why := range ignored {
		if !strings.Contains(notes, "  - "+key+": ") || !strings.Contains(notes, why) {
			t.Errorf("with testdata/upstream-values.yaml: NOTES do not say %s is ignored (%q):\n%s", key, why, notes)
		}
	}
}

func TestManifestsUpToDate(t *testing.T) {
	chartDeps(t)
	tmp := t.TempDir()
	mustRun(t, "..", nil, "hack/chart/render-manifests.sh", tool(t, "HELM"), filepath.Join("deploy", chartDir), tmp)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadDir(manifestsDir)
	if err != nil {
		t.Fatalf("%v; run make manifests", err)
	}
	var gotNames, wantNames []string
	for _, e := range entries {
		wantNames = append(wantNames, e.Name())
	}
	for _, e := range committed {
		gotNames = append(gotNames, e.Name())
	}
	diff(t, "files in deploy/manifests", wantNames, gotNames)
	for _, e := range entries {
		want, _ := os.ReadFile(filepath.Join(tmp, e.Name()))
		got, err := os.ReadFile(filepath.Join(manifestsDir, e.Name()))
		if err != nil {
			t.Errorf("%v; run make manifests", err)
			continue
		}
		if d := cmp.Diff(string(want), string(got)); d != "" {
			t.Errorf("deploy/manifests/%s is stale; run make manifests (-rendered +committed):\n%s", e.Name(), d)
		}
	}
}

// dockerStage is one stage of a Dockerfile: its ARG defaults, RUN and COPY
// arguments and its last ENTRYPOINT.
type dockerStage struct {
	name       string
	args       map[string]string
	runs       []string
	copies     []string
	entrypoint string
}

// parseDockerfile reads instructions (joining continuation lines) and groups
// ARG and RUN by stage; ARGs before the first FROM are ignored.
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var instrs []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continued instruction
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteString("\n")
			continue
		}
		cur.WriteString(line)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	for _, in := range instrs {
		kw, rest, _ := strings.Cut(strings.TrimSpace(in), " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(kw) {
		case "FROM":
			st := dockerStage{args: map[string]string{}}
			if f := strings.Fields(rest); len(f) >= 3 && strings.EqualFold(f[len(f)-2], "AS") {
				st.name = f[len(f)-1]
			}
			stages = append(stages, st)
		case "ARG":
			if len(stages) > 0 {
				k, v, _ := strings.Cut(rest, "=")
				stages[len(stages)-1].args[k] = v
			}
		case "RUN":
			if len(stages) > 0 {
				stages[len(stages)-1].runs = append(stages[len(stages)-1].runs, rest)
			}
		case "COPY":
			if len(stages) > 0 {
				stages[len(stages)-1].copies = append(stages[len(stages)-1].copies, rest)
			}
		case "ENTRYPOINT":
			if len(stages) > 0 {
				stages[len(stages)-1].entrypoint = rest
			}
		}
	}
	return stages
}

// runBuilder runs every RUN of the Dockerfile's "builder" stage, verbatim, in
// the repository root (what `COPY . .` gives the stage) with the stage's ARGs
// as environment, overriding the given ones.
func runBuilder(t *testing.T, dockerfile string, override map[string]string) {
	t.Helper()
	if _, err := os.Stat("../cmd/provider"); err != nil {
		t.Fatalf("./cmd/provider does not exist yet: %v", err)
	}
	var builder *dockerStage
	stages := parseDockerfile(t, dockerfile)
	for i := range stages {
		if stages[i].name == "builder" {
			builder = &stages[i]
		}
	}
	if builder == nil {
		t.Fatalf("%s has no builder stage", dockerfile)
	}
	var buildCmds int
	for _, r := range builder.runs {
		if strings.Contains(r, "go build") {
			buildCmds++
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags", "-s -w", "pkg/version.BuildVersion=${VERSION}", "pkg/version.GitCommit=${GIT_COMMIT}", "pkg/version.BuildDate=${BUILD_DATE}", "./cmd/provider"} {
				if !strings.Contains(r, want) {
					t.Errorf("%s build command lacks %q: %s", dockerfile, want, r)
				}
			}
		}
	}
	if buildCmds != 1 {
		t.Fatalf("%s: %d RUN lines with go build in the builder stage, want 1", dockerfile, buildCmds)
	}
	var env []string
	for k, v := range builder.args {
		if o, ok := override[k]; ok {
			v = o
		}
		env = append(env, k+"="+v)
	}
	for _, r := range builder.runs {
		t.Logf("RUN %s", r)
		mustRun(t, "..", env, "sh", "-c", r)
	}
}

func TestDockerfileBuildCommand(t *testing.T) {
	out := t.TempDir()
	runBuilder(t, "../Dockerfile", map[string]string{
		"OUT": out, "TARGETOS": "linux", "TARGETARCH": runtime.GOARCH,
		"VERSION": "v9.8.7-test", "GIT_COMMIT": "0123456789abcdef", "BUILD_DATE": "2026-01-02T03:04:05Z",
	})
	bin := filepath.Join(out, "provider")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header: not statically linked", bin, p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Errorf("%s has a .dynamic section: not statically linked", bin)
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table although built with -s", bin)
	}
	_ = f.Close()

	got := mustRun(t, ".", nil, bin, "--version")
	var info map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(got)), &info); err != nil {
		t.Fatalf("--version did not print one JSON object: %v\n%s", err, got)
	}
	diff(t, "--version", m{"version": "v9.8.7-test", "gitCommit": "0123456789abcdef", "buildDate": "2026-01-02T03:04:05Z"},
		m{"version": info["version"], "gitCommit": info["gitCommit"], "buildDate": info["buildDate"]})

	// The binary accepts every flag the chart passes, with default and with changed values.
	for _, tc := range []struct{ name, values string }{{providerDS, ""}, {"kv", "testdata/all-values.yaml"}, {"kv-up", "testdata/upstream-values.yaml"}} {
		args := []string{}
		if tc.values != "" {
			args = append(args, "-f", tc.values)
		}
		rendered, err := helmTemplate(t, args...)
		if err != nil {
			t.Fatalf("helm template: %v\n%s", err, rendered)
		}
		chartArgs := findDaemonSet(t, parse(t, rendered), tc.name).Spec.Template.Spec.Containers[0].Args
		mustRun(t, ".", nil, bin, append(chartArgs, "--version")...)
	}

	lic, err := os.ReadDir(filepath.Join(out, "licenses"))
	if err != nil || len(lic) == 0 {
		t.Errorf("no licenses collected in %s/licenses: %v", out, err)
	}
}

func TestDockerfileWindowsBuildCommand(t *testing.T) {
	out := t.TempDir()
	runBuilder(t, "../Dockerfile.windows", map[string]string{
		"OUT": out, "TARGETARCH": "amd64",
		"VERSION": "v9.8.7-test", "GIT_COMMIT": "0123456789abcdef", "BUILD_DATE": "2026-01-02T03:04:05Z",
	})
	f, err := pe.Open(filepath.Join(out, "provider.exe"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
		t.Errorf("machine %#x, want amd64", f.Machine)
	}
	raw, err := os.ReadFile(filepath.Join(out, "provider.exe"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("v9.8.7-test")) {
		t.Error("provider.exe does not contain the injected version")
	}
}

// The chart's appVersion, the Chart.yaml dependency and the packaging script
// agree on versions.
func TestVersionsAgree(t *testing.T) {
	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(chart), "version: "+driverVersion+"\n") {
		t.Errorf("Chart.yaml does not depend on secrets-store-csi-driver %s", driverVersion)
	}
	script, err := os.ReadFile("../hack/chart/package-driver-chart.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), `version="`+driverVersion+`"`) {
		t.Errorf("hack/chart/package-driver-chart.sh does not package %s", driverVersion)
	}
}

// upstreamDefaults lists every key of Azure's chart values.yaml with Azure's
// default as JSON; maps and lists count as one key. Taken from
// csi-secrets-store-provider-azure 1.8.2 (the chart in the Go module
// github.com/Azure/secrets-store-csi-driver-provider-azure@v1.8.2, which make e2e-node also
// installs); chart 1.7.2 has the same keys.
var upstreamDefaults = map[string]string{
	"nameOverride":                   `""`,
	"fullnameOverride":               `""`,
	"imagePullSecrets":               `[]`,
	"logFormatJSON":                  `false`,
	"logVerbosity":                   `0`,
	"enableArcExtension":             `false`,
	"rbac.install":                   `true`,
	"rbac.pspEnabled":                `false`,
	"constructPEMChain":              `true`,
	"writeCertAndKeyInSeparateFiles": `false`,
	"metricsAddr":                    `"8898"`,

	"linux.image.repository":                            `"mcr.microsoft.com/oss/v2/azure/secrets-store/provider-azure"`,
	"linux.image.tag":                                   `"v1.8.2"`,
	"linux.image.pullPolicy":                            `"IfNotPresent"`,
	"linux.nodeSelector":                                `{}`,
	"linux.tolerations":                                 `[{"operator":"Exists"}]`,
	"linux.enabled":                                     `true`,
	"linux.resources.requests.cpu":                      `"50m"`,
	"linux.resources.requests.memory":                   `"100Mi"`,
	"linux.resources.limits.cpu":                        `"50m"`,
	"linux.resources.limits.memory":                     `"100Mi"`,
	"linux.podLabels":                                   `{}`,
	"linux.podAnnotations":                              `{}`,
	"linux.priorityClassName":                           `""`,
	"linux.updateStrategy.type":                         `"RollingUpdate"`,
	"linux.updateStrategy.rollingUpdate.maxUnavailable": `1`,
	"linux.privileged":                                  `false`,
	"linux.customUserAgent":                             `""`,
	"linux.healthzPort":                                 `8989`,
	"linux.healthzPath":                                 `"/healthz"`,
	"linux.healthzTimeout":                              `"5s"`,
	"linux.volumes":                                     `[]`,
	"linux.volumeMounts":                                `[]`,
	"linux.kubeletRootDir":                              `"/var/lib/kubelet"`,
	"linux.providersDir":                                `"/var/run/secrets-store-csi-providers"`,
	"linux.affinity":                                    `{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"type","operator":"NotIn","values":["virtual-kubelet"]}]}]}}}`,
	"linux.dnsPolicy":                                   `"ClusterFirstWithHostNet"`,

	"windows.image.repository":                            `"mcr.microsoft.com/oss/v2/azure/secrets-store/provider-azure"`,
	"windows.image.tag":                                   `"v1.8.2"`,
	"windows.image.pullPolicy":                            `"IfNotPresent"`,
	"windows.nodeSelector":                                `{}`,
	"windows.tolerations":                                 `[{"operator":"Exists"}]`,
	"windows.enabled":                                     `false`,
	"windows.resources.requests.cpu":                      `"100m"`,
	"windows.resources.requests.memory":                   `"200Mi"`,
	"windows.resources.limits.cpu":                        `"100m"`,
	"windows.resources.limits.memory":                     `"200Mi"`,
	"windows.podLabels":                                   `{}`,
	"windows.podAnnotations":                              `{}`,
	"windows.priorityClassName":                           `""`,
	"windows.updateStrategy.type":                         `"RollingUpdate"`,
	"windows.updateStrategy.rollingUpdate.maxUnavailable": `1`,
	"windows.customUserAgent":                             `""`,
	"windows.healthzPort":                                 `8989`,
	"windows.healthzPath":                                 `"/healthz"`,
	"windows.healthzTimeout":                              `"5s"`,
	"windows.volumes":                                     `[]`,
	"windows.volumeMounts":                                `[]`,
	"windows.kubeletRootDir":                              `"C:\\var\\lib\\kubelet"`,
	"windows.providersDir":                                `"C:\\k\\secrets-store-csi-providers"`,
	"windows.affinity":                                    `{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"type","operator":"NotIn","values":["virtual-kubelet"]}]}]}}}`,

	"secrets-store-csi-driver.install":                               `true`,
	"secrets-store-csi-driver.fullnameOverride":                      `"secrets-store-csi-driver"`,
	"secrets-store-csi-driver.linux.enabled":                         `true`,
	"secrets-store-csi-driver.linux.kubeletRootDir":                  `"/var/lib/kubelet"`,
	"secrets-store-csi-driver.linux.metricsAddr":                     `":8080"`,
	"secrets-store-csi-driver.linux.priorityClassName":               `""`,
	"secrets-store-csi-driver.linux.image.repository":                `"mcr.microsoft.com/oss/v2/kubernetes-csi/secrets-store/driver"`,
	"secrets-store-csi-driver.linux.image.tag":                       `"v1.5.6"`,
	"secrets-store-csi-driver.linux.image.pullPolicy":                `"IfNotPresent"`,
	"secrets-store-csi-driver.linux.registrarImage.repository":       `"mcr.microsoft.com/oss/v2/kubernetes-csi/csi-node-driver-registrar"`,
	"secrets-store-csi-driver.linux.registrarImage.tag":              `"v2.14.0"`,
	"secrets-store-csi-driver.linux.registrarImage.pullPolicy":       `"IfNotPresent"`,
	"secrets-store-csi-driver.linux.livenessProbeImage.repository":   `"mcr.microsoft.com/oss/v2/kubernetes-csi/livenessprobe"`,
	"secrets-store-csi-driver.linux.livenessProbeImage.tag":          `"v2.15.0"`,
	"secrets-store-csi-driver.linux.livenessProbeImage.pullPolicy":   `"IfNotPresent"`,
	"secrets-store-csi-driver.linux.crds.image.repository":           `"mcr.microsoft.com/oss/v2/kubernetes-csi/secrets-store/driver-crds"`,
	"secrets-store-csi-driver.linux.crds.image.tag":                  `"v1.5.6"`,
	"secrets-store-csi-driver.linux.crds.image.pullPolicy":           `"IfNotPresent"`,
	"secrets-store-csi-driver.linux.providersDir":                    `"/var/run/secrets-store-csi-providers"`,
	"secrets-store-csi-driver.windows.enabled":                       `false`,
	"secrets-store-csi-driver.windows.kubeletRootDir":                `"C:\\var\\lib\\kubelet"`,
	"secrets-store-csi-driver.windows.metricsAddr":                   `":8080"`,
	"secrets-store-csi-driver.windows.priorityClassName":             `""`,
	"secrets-store-csi-driver.windows.image.repository":              `"mcr.microsoft.com/oss/v2/kubernetes-csi/secrets-store/driver"`,
	"secrets-store-csi-driver.windows.image.tag":                     `"v1.5.6"`,
	"secrets-store-csi-driver.windows.image.pullPolicy":              `"IfNotPresent"`,
	"secrets-store-csi-driver.windows.registrarImage.repository":     `"mcr.microsoft.com/oss/v2/kubernetes-csi/csi-node-driver-registrar"`,
	"secrets-store-csi-driver.windows.registrarImage.tag":            `"v2.14.0"`,
	"secrets-store-csi-driver.windows.registrarImage.pullPolicy":     `"IfNotPresent"`,
	"secrets-store-csi-driver.windows.livenessProbeImage.repository": `"mcr.microsoft.com/oss/v2/kubernetes-csi/livenessprobe"`,
	"secrets-store-csi-driver.windows.livenessProbeImage.tag":        `"v2.15.0"`,
	"secrets-store-csi-driver.windows.livenessProbeImage.pullPolicy": `"IfNotPresent"`,
	"secrets-store-csi-driver.enableSecretRotation":                  `false`,
	"secrets-store-csi-driver.rotationPollInterval":                  `"2m"`,
	"secrets-store-csi-driver.filteredWatchSecret":                   `true`,
	"secrets-store-csi-driver.syncSecret.enabled":                    `false`,
	"secrets-store-csi-driver.tokenRequests":                         `[{"audience":"api://AzureADTokenExchange"},{"audience":"api://AKSIdentityBinding"}]`,
}

// Keys testdata/upstream-values.yaml leaves at Azure's default, and why.
var upstreamKeptDefault = map[string]string{
	"linux.enabled":                          "false renders no Linux DaemonSet to check linux.* on",
	"secrets-store-csi-driver.install":       "false renders no driver to check its values on",
	"secrets-store-csi-driver.linux.enabled": "false renders no driver DaemonSet",
	"linux.updateStrategy.type":              "OnDelete forbids the rollingUpdate.maxUnavailable set beside it; OnDelete is rendered separately",
	"windows.updateStrategy.type":            "as linux.updateStrategy.type",
}

func loadValuesFile(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func lookupPath(values map[string]any, path string) (any, bool) {
	var cur any = values
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// TestUpstreamValues renders testdata/upstream-values.yaml, which sets every
// key of Azure's values.yaml away from Azure's default, and checks that each
// key means here what it means there (or, for the ignored ones, nothing).
// TestKubeconform validates the same render, TestDockerfileBuildCommand runs
// the binary with its flags and TestNotesIgnoredValues checks its notes.
func TestUpstreamValues(t *testing.T) {
	values := loadValuesFile(t, "testdata/upstream-values.yaml")
	for key, def := range upstreamDefaults {
		got, ok := lookupPath(values, key)
		if !ok {
			t.Errorf("testdata/upstream-values.yaml does not set Azure's key %s", key)
			continue
		}
		gotJSON, _ := json.Marshal(got)
		_, kept := upstreamKeptDefault[key]
		if same := cmp.Equal(jsonOf(t, json.RawMessage(def)), jsonOf(t, got)); same != kept {
			t.Errorf("testdata/upstream-values.yaml: %s = %s, Azure's default %s (want it %s)", key, gotJSON, def,
				map[bool]string{true: "kept: " + upstreamKeptDefault[key], false: "changed"}[kept])
		}
	}

	out, err := helmTemplate(t, "-f", "testdata/upstream-values.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := parse(t, out)
	for _, o := range objs {
		if o.Kind == "PodSecurityPolicy" {
			t.Errorf("rendered PodSecurityPolicy %v (rbac.pspEnabled is ignored)", o.Metadata["name"])
		}
		// The driver's objects are named sscd* (its fullnameOverride) or secretprovider*.
		if !strings.HasPrefix(fmt.Sprint(o.Metadata["name"]), "kv-up") {
			continue
		}
		if o.Kind == "ServiceAccount" {
			t.Errorf("rbac.install=false still renders ServiceAccount %v", o.Metadata["name"])
		}
		if strings.Contains(o.Kind, "Role") {
			t.Errorf("rendered %s %v: the provider needs no RBAC", o.Kind, o.Metadata["name"])
		}
	}

	ds := findDaemonSet(t, objs, "kv-up")
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	diff(t, "args", []string{
		"--endpoint=unix:///provider/azure.sock",
		"--log-format-json=true",
		"-v=3",
		"--healthz-port=9898",
		"--healthz-path=/livez",
		"--healthz-timeout=3s",
		"--prometheus-port=9797",
		"--construct-pem-chain=false",
		"--write-cert-and-key-in-separate-files=true",
		"--cloud-name=AzurePublicCloud",
		"--parallel-fetches=16",
		"--result-cache-ttl=10s",
		"--vault-rate-limit=200",
		"--vault-burst=400",
		"--max-concurrent-mounts=16",
		"--managed-identity-namespaces=*",
		"--allow-managed-identity-selections=false",
		"--healthz-bind-address=127.0.0.1",
		"--custom-user-agent=contoso-aks/1.0 (cluster prod-1)",
	}, c.Args)
	diff(t, "image", "myacr.azurecr.io/oss/azure/secrets-store/provider-azure:v1.8.2-custom", c.Image)
	diff(t, "pullPolicy", "Always", c.ImagePullPolicy)
	diff(t, "ports", []m{
		{"name": "healthz", "containerPort": 9898, "protocol": "TCP"},
		{"name": "metrics", "containerPort": 9797, "protocol": "TCP"},
	}, c.Ports)
	diff(t, "livenessProbe", m{
		"httpGet":             m{"host": "127.0.0.1", "path": "/livez", "port": 9898},
		"initialDelaySeconds": 5, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3,
	}, c.LivenessProbe)
	diff(t, "resources", m{"requests": m{"cpu": "20m", "memory": "60Mi"}, "limits": m{"cpu": "250m", "memory": "300Mi"}}, c.Resources)
	diff(t, "securityContext (linux.privileged)", m{
		"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false, "privileged": true,
		"readOnlyRootFilesystem": true,
		"capabilities":           m{"drop": []string{"ALL"}},
		"seccompProfile":         m{"type": "RuntimeDefault"},
	}, c.SecurityContext)
	diff(t, "hostNetwork", true, pod.HostNetwork)
	diff(t, "dnsPolicy", "Default", pod.DNSPolicy)
	diff(t, "serviceAccountName (rbac.install=false)", "csi-secrets-store-provider-azure", pod.ServiceAccountName) // Azure's, which must exist
	diff(t, "imagePullSecrets", []m{{"name": "acr-pull"}}, pod.ImagePullSecrets)
	diff(t, "priorityClassName", "system-cluster-critical", pod.PriorityClassName)
	diff(t, "nodeSelector", m{"kubernetes.io/os": "linux", "agentpool": "system"}, pod.NodeSelector)
	diff(t, "tolerations", []m{{"key": "CriticalAddonsOnly", "operator": "Exists"}}, pod.Tolerations)
	diff(t, "affinity", m{"nodeAffinity": m{"requiredDuringSchedulingIgnoredDuringExecution": m{
		"nodeSelectorTerms": []m{{"matchExpressions": []m{{"key": "kubernetes.azure.com/mode", "operator": "In", "values": []string{"system"}}}}},
	}}}, pod.Affinity)
	diff(t, "updateStrategy", m{"type": "RollingUpdate", "rollingUpdate": m{"maxUnavailable": 2}}, ds.Spec.UpdateStrategy)
	diff(t, "pod labels team/app", map[string]string{"team": "platform", "app": "kv-upstream"},
		map[string]string{"team": ds.Spec.Template.Metadata.Labels["team"], "app": ds.Spec.Template.Metadata.Labels["app"]})
	diff(t, "podAnnotations", map[string]string{"example.com/owner": "platform"}, ds.Spec.Template.Metadata.Annotations)
	diff(t, "volumeMounts", []m{{"name": "provider-vol", "mountPath": "/provider"}, clusterCAMount, {"name": "extra", "mountPath": "/extra"}}, c.VolumeMounts)
	diff(t, "volumes", []m{
		{"name": "provider-vol", "hostPath": m{"path": "/etc/kubernetes/secrets-store-csi-providers", "type": "DirectoryOrCreate"}},
		clusterCA,
		{"name": "extra", "emptyDir": m{}},
	}, pod.Volumes)

	w := findDaemonSet(t, objs, "kv-up-windows")
	wp := w.Spec.Template.Spec
	wc := wp.Containers[0]
	diff(t, "windows args", []string{
		`--endpoint=unix://C:\provider\azure.sock`,
		"--log-format-json=true",
		"-v=3",
		"--healthz-port=9899",
		"--healthz-path=/readyz",
		"--healthz-timeout=4s",
		"--prometheus-port=9797",
		"--construct-pem-chain=false",
		"--write-cert-and-key-in-separate-files=true",
		"--cloud-name=AzurePublicCloud",
		"--parallel-fetches=16",
		"--result-cache-ttl=10s",
		"--vault-rate-limit=200",
		"--vault-burst=400",
		"--max-concurrent-mounts=16",
		"--managed-identity-namespaces=*",
		"--allow-managed-identity-selections=false",
		"--custom-user-agent=contoso-aks-win/1.0",
	}, wc.Args)
	diff(t, "windows image", "myacr.azurecr.io/oss/azure/secrets-store/provider-azure:v1.8.2-windows", wc.Image)
	diff(t, "windows pullPolicy", "Never", wc.ImagePullPolicy)
	diff(t, "windows resources", m{"requests": m{"cpu": "150m", "memory": "250Mi"}, "limits": m{"cpu": "300m", "memory": "500Mi"}}, wc.Resources)
	diff(t, "windows hostNetwork", false, wp.HostNetwork)
	diff(t, "windows nodeSelector", m{"kubernetes.io/os": "windows", "agentpool": "win"}, wp.NodeSelector)
	diff(t, "windows tolerations", []m{{"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}}, wp.Tolerations)
	diff(t, "windows updateStrategy", m{"type": "RollingUpdate", "rollingUpdate": m{"maxUnavailable": "25%"}}, w.Spec.UpdateStrategy)
	diff(t, "windows pod label app", "kv-upstream", w.Spec.Template.Metadata.Labels["app"])
	diff(t, "windows podAnnotations", map[string]string{"example.com/owner": "platform-win"}, w.Spec.Template.Metadata.Annotations)
	diff(t, "windows volumeMounts", []m{{"name": "provider-vol", "mountPath": `C:\provider`}, clusterCAMount, {"name": "extra", "mountPath": `C:\extra`}}, wc.VolumeMounts)
	diff(t, "windows volumes", []m{
		{"name": "provider-vol", "hostPath": m{"path": `D:\secrets-store-csi-providers`, "type": "DirectoryOrCreate"}},
		clusterCA,
		{"name": "extra", "emptyDir": m{}},
	}, wp.Volumes)

	// The driver chart receives Azure's secrets-store-csi-driver values.
	var sawCSIDriver, sawDriver bool
	for _, o := range objs {
		switch {
		case o.Kind == "CSIDriver":
			sawCSIDriver = true
			diff(t, "CSIDriver tokenRequests", []m{{"audience": "api://AzureADTokenExchange"}, {"audience": "https://kv.example.com"}}, o.Spec["tokenRequests"])
		case o.Kind == "DaemonSet" && o.Metadata["name"] == "sscd":
			sawDriver = true
			for _, want := range []string{`"--metrics-addr=:8081"`, `"/var/lib/k8s/kubelet/pods"`, `"/etc/kubernetes/secrets-store-csi-providers"`, `"--rotation-poll-interval=90s"`, `driver:v1.5.6-custom"`} {
				if !bytes.Contains(o.raw, []byte(want)) {
					t.Errorf("driver DaemonSet lacks %s: %s", want, o.raw)
				}
			}
		}
	}
	if !sawCSIDriver || !sawDriver {
		t.Errorf("driver objects missing: CSIDriver %v, DaemonSet sscd %v", sawCSIDriver, sawDriver)
	}

	// OnDelete from a values file: the merged default rollingUpdate is dropped.
	out, err = helmTemplate(t, "-f", "testdata/upstream-values.yaml", "--set", "windows.updateStrategy.type=OnDelete")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	diff(t, "OnDelete updateStrategy", m{"type": "OnDelete"}, findDaemonSet(t, parse(t, out), "kv-up-windows").Spec.UpdateStrategy)
}

// Helm's --set gives an empty string for `key=`; Azure's booleans read it as
// false, so `--set windows.enabled=` must render without Windows (and not fail
// "got string, want boolean").
// TestMetricsOffAndNoManagedIdentity: metricsEnabled=false turns /metrics off (flag and port), and
// managedIdentity.namespaces=[] passes an empty list (no namespace may use the node's identities).
func TestMetricsOffAndNoManagedIdentity(t *testing.T) {
	out, err := helmTemplate(t, "--set", "metricsEnabled=false", "--set-json", "managedIdentity.namespaces=[]")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	c := findDaemonSet(t, parse(t, out), providerDS).Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--prometheus-port=0", "--managed-identity-namespaces="} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
	diff(t, "ports", []m{{"name": "healthz", "containerPort": 8989, "protocol": "TCP"}}, c.Ports)
}

// TestMemoryLimitEnv: GOMEMLIMIT is 90% of the memory limit in bytes, or the whole limit through
// the downward API when helm cannot read it as a whole number with a unit.
func TestMemoryLimitEnv(t *testing.T) {
	for limit, want := range map[string]m{
		"256M":  {"name": "GOMEMLIMIT", "value": "230400000"},
		"1Gi":   {"name": "GOMEMLIMIT", "value": "966367641"},
		"0.5Gi": {"name": "GOMEMLIMIT", "valueFrom": m{"resourceFieldRef": m{"containerName": "provider-azure-installer", "resource": "limits.memory"}}},
	} {
		out, err := helmTemplate(t, "--set", "linux.resources.limits.memory="+limit)
		if err != nil {
			t.Fatalf("helm template: %v\n%s", err, out)
		}
		diff(t, "env with a "+limit+" limit", []m{want}, findDaemonSet(t, parse(t, out), providerDS).Spec.Template.Spec.Containers[0].Env)
	}
}

func TestUpstreamEmptyBooleans(t *testing.T) {
	render := func(t *testing.T, args ...string) []object {
		t.Helper()
		out, err := helmTemplate(t, args...)
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", args, err, out)
		}
		return parse(t, out)
	}
	t.Run("windows.enabled=", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{
			{"--set", "windows.enabled="},
			{"-f", "testdata/upstream-values.yaml", "--set", "windows.enabled="}, // overrides a true
		} {
			objs := render(t, args...)
			if has(objs, "DaemonSet", providerDS+"-windows") || has(objs, "DaemonSet", "kv-up-windows") {
				t.Errorf("%v renders the provider's Windows DaemonSet", args)
			}
			if !has(objs, "DaemonSet", providerDS) && !has(objs, "DaemonSet", "kv-up") {
				t.Errorf("%v renders no Linux DaemonSet", args)
			}
		}
	})
	t.Run("linux.enabled=", func(t *testing.T) {
		t.Parallel()
		objs := render(t, "--set", "linux.enabled=,windows.enabled=true")
		if has(objs, "DaemonSet", providerDS) || !has(objs, "DaemonSet", providerDS+"-windows") {
			t.Errorf("linux.enabled= with windows.enabled=true: want only the Windows DaemonSet")
		}
	})
	t.Run("flags", func(t *testing.T) {
		t.Parallel()
		objs := render(t, "--set", "logFormatJSON=,constructPEMChain=,writeCertAndKeyInSeparateFiles=,linux.privileged=")
		c := findDaemonSet(t, objs, providerDS).Spec.Template.Spec.Containers[0]
		for _, want := range []string{"--log-format-json=false", "--construct-pem-chain=false", "--write-cert-and-key-in-separate-files=false"} {
			if !slices.Contains(c.Args, want) {
				t.Errorf("args %v lack %s", c.Args, want)
			}
		}
		if c.SecurityContext["allowPrivilegeEscalation"] != false || c.SecurityContext["privileged"] != nil {
			t.Errorf("linux.privileged= gives securityContext %v, want allowPrivilegeEscalation false and no privileged", c.SecurityContext)
		}
	})
	t.Run("rbac", func(t *testing.T) {
		t.Parallel()
		objs := render(t, "--set", "rbac.install=,rbac.pspEnabled=,enableArcExtension=")
		if has(objs, "ServiceAccount", "") {
			t.Error("rbac.install= still renders the ServiceAccount")
		}
		diff(t, "serviceAccountName", "csi-secrets-store-provider-azure", findDaemonSet(t, objs, providerDS).Spec.Template.Spec.ServiceAccountName)
	})
	t.Run("driver", func(t *testing.T) {
		t.Parallel()
		objs := render(t, "--set", "secrets-store-csi-driver.install=true,secrets-store-csi-driver.syncSecret.enabled=,secrets-store-csi-driver.enableSecretRotation=")
		if !has(objs, "CSIDriver", "") {
			t.Error("no CSIDriver rendered")
		}
		for _, o := range objs {
			if strings.Contains(o.Kind, "Role") && (strings.Contains(fmt.Sprint(o.Metadata["name"]), "syncsecret") || strings.Contains(fmt.Sprint(o.Metadata["name"]), "rotation")) {
				t.Errorf("empty syncSecret.enabled / enableSecretRotation render %s %v", o.Kind, o.Metadata["name"])
			}
		}
	})
}

// TestUpstreamNames: the objects are named, labelled and selected as Azure's chart does, so that
// a release of Azure's chart upgrades in place (helm keeps a DaemonSet of the same name and an
// immutable selector) and bindings, monitoring and kubectl selectors keep working.
func TestUpstreamNames(t *testing.T) {
	for _, tc := range []struct {
		set, ds, app, sa string
	}{
		{"windows.enabled=true", providerDS, "csi-secrets-store-provider-azure", "csi-secrets-store-provider-azure"},
		{"windows.enabled=true,nameOverride=kv-csi", release + "-kv-csi", "kv-csi", "csi-secrets-store-provider-azure"},
		{"windows.enabled=true,fullnameOverride=kv,serviceAccount.name=mine", "kv", "csi-secrets-store-provider-azure", "mine"},
	} {
		out, err := helmTemplate(t, "--set", tc.set)
		if err != nil {
			t.Fatalf("--set %s: %v\n%s", tc.set, err, out)
		}
		objs := parse(t, out)
		if !has(objs, "ServiceAccount", tc.sa) && !strings.Contains(tc.set, "serviceAccount.name") {
			t.Errorf("--set %s: no ServiceAccount %s", tc.set, tc.sa)
		}
		for _, o := range objs {
			if labels, _ := o.Metadata["labels"].(map[string]any); o.Kind == "ServiceAccount" && labels["app"] != tc.app {
				t.Errorf("--set %s: ServiceAccount %v has label app %v, want %s as Azure's", tc.set, o.Metadata["name"], labels["app"], tc.app)
			}
		}
		for _, name := range []string{tc.ds, tc.ds + "-windows"} {
			ds := findDaemonSet(t, objs, name)
			diff(t, name+" selector", m{"matchLabels": m{"app": tc.app}}, ds.Spec.Selector)
			labels := ds.Spec.Template.Metadata.Labels
			diff(t, name+" pod labels app, name", []string{tc.app, tc.app}, []string{labels["app"], labels["app.kubernetes.io/name"]})
			if labels["app.kubernetes.io/instance"] != release {
				t.Errorf("--set %s: %s lost our labels: %v", tc.set, name, labels)
			}
			pod := ds.Spec.Template.Spec
			diff(t, name+" container", "provider-azure-installer", pod.Containers[0].Name)
			diff(t, name+" serviceAccountName", tc.sa, pod.ServiceAccountName)
		}
		if n := strings.Count(out, "\n        app: "); n != 2 {
			t.Errorf("--set %s: %d pod-template app labels rendered, want 2 (one per DaemonSet, no duplicates)", tc.set, n)
		}
	}
	// The selector's label cannot be replaced by podLabels: the API would refuse the DaemonSet.
	for _, set := range []string{"linux.podLabels.app=mine", "windows.enabled=true,windows.podLabels.app=mine"} {
		if out, err := helmTemplate(t, "--set", set); err == nil || !strings.Contains(out, "podLabels.app: the DaemonSet selects its pods by app=csi-secrets-store-provider-azure") {
			t.Errorf("--set %s: want a refusal naming the selector, got %v:\n%s", set, err, out)
		}
	}
}

// mountCovers reports whether path is mountPath or inside it; on Windows,
// paths compare without drive letter, case or separator differences.
func mountCovers(mountPath, path string, windows bool) bool {
	norm := func(p string) string {
		if windows {
			p = strings.ToLower(strings.ReplaceAll(p, `\`, "/"))
			if len(p) >= 2 && p[1] == ':' {
				p = p[2:]
			}
		}
		return filepath.ToSlash(filepath.Clean("/" + p))
	}
	mp, p := norm(mountPath), norm(path)
	return mp == "/" || p == mp || strings.HasPrefix(p, mp+"/")
}

// imageBinary returns the file the image's ENTRYPOINT runs (exec form), and
// checks that a COPY of the final stage puts a file there.
func imageBinary(t *testing.T, dockerfile string, windows bool) string {
	t.Helper()
	stages := parseDockerfile(t, dockerfile)
	final := stages[len(stages)-1]
	var ep []string
	if err := json.Unmarshal([]byte(final.entrypoint), &ep); err != nil || len(ep) == 0 {
		t.Fatalf("%s: ENTRYPOINT %q is not a JSON (exec form) list: %v", dockerfile, final.entrypoint, err)
	}
	for _, c := range final.copies {
		f := strings.Fields(c)
		if dest := f[len(f)-1]; mountCovers(dest, ep[0], windows) && mountCovers(ep[0], dest, windows) {
			return ep[0]
		}
	}
	t.Fatalf("%s: no COPY in the final stage writes the ENTRYPOINT binary %s (copies: %q)", dockerfile, ep[0], final.copies)
	return ""
}

// The image's binary must not be at or under any path the DaemonSets mount:
// a hostPath directory mounted over the binary (the Dockerfile used to put it
// at /provider, where the chart mounts the providers directory) makes runc fail
// "not a directory" and the pod crash-loop.
func TestImageBinaryOutsideMounts(t *testing.T) {
	if !mountCovers("/provider", "/provider", false) || !mountCovers(`C:\provider`, `c:/Provider/x.exe`, true) ||
		mountCovers("/provider", "/provider.exe", false) || mountCovers(`C:\provider`, `C:\provider.exe`, true) {
		t.Fatal("mountCovers is wrong")
	}
	binaries := map[string]string{
		"linux":   imageBinary(t, "../Dockerfile", false),
		"windows": imageBinary(t, "../Dockerfile.windows", true),
	}
	checked := 0
	for _, args := range [][]string{
		{"--set", "windows.enabled=true"},
		{"--set", "windows.enabled=true,caBundle.configMapName=corp-ca"},
		{"-f", "testdata/all-values.yaml"},
		{"-f", "testdata/upstream-values.yaml"},
	} {
		out, err := helmTemplate(t, args...)
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", args, err, out)
		}
		for _, o := range parse(t, out) {
			if o.Kind != "DaemonSet" || strings.HasPrefix(fmt.Sprint(o.Metadata["name"]), "secrets-store-csi-driver") || o.Metadata["name"] == "sscd" {
				continue
			}
			var ds daemonSet
			if err := json.Unmarshal(o.raw, &ds); err != nil {
				t.Fatal(err)
			}
			osName := ds.Spec.Template.Spec.NodeSelector["kubernetes.io/os"]
			bin, ok := binaries[osName]
			if !ok {
				t.Fatalf("DaemonSet %s: no image for kubernetes.io/os=%q", ds.Metadata.Name, osName)
			}
			for _, c := range ds.Spec.Template.Spec.Containers {
				for _, vm := range c.VolumeMounts {
					mp := fmt.Sprint(vm["mountPath"])
					checked++
					if mountCovers(mp, bin, osName == "windows") {
						t.Errorf("%v: DaemonSet %s mounts %s at %s, over the image's binary %s", args, ds.Metadata.Name, vm["name"], mp, bin)
					}
				}
			}
		}
	}
	if checked < 8 {
		t.Errorf("only %d volume mounts checked", checked)
	}
}
