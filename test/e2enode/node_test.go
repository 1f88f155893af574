//go:build node

// Package e2enode runs the chart on a real node: hack/e2e/node.sh starts etcd, kube-apiserver
// (RBAC + Node authorization), kube-controller-manager, kube-scheduler, containerd + runc and a
// kubelet, imports the images, and runs this test. It helm-installs deploy/helm/akv-provider with
// the secrets-store-csi-driver, pointed at the Key Vault emulator the way an operator behind a
// proxy would be (HTTPS_PROXY and a CA bundle through the chart's values), and checks what real
// pods read from their volumes.
package e2enode

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
)

const (
	tenantID = "8d7a7b3c-0a51-4c0e-9b55-6d6f0b1f2e02"
	vault    = "kv-node"

	wiClientID     = "bbbbbbbb-0000-0000-0000-000000000001" // workload identity (federated)
	spClientID     = "bbbbbbbb-0000-0000-0000-000000000002" // service principal (client secret)
	spSecret       = "node-e2e-client-secret"               //nolint:gosec // seeded into the emulator
	miClientID     = "bbbbbbbb-0000-0000-0000-000000000003" // user-assigned managed identity
	ibClientID     = "bbbbbbbb-0000-0000-0000-000000000005" // user-assigned, used through identity binding
	deniedClientID = "bbbbbbbb-0000-0000-0000-000000000004" // federated, keys only

	release      = "akv"
	releaseNS    = "kube-system"
	providerPods = "app=csi-secrets-store-provider-azure"
	driverPods   = "app=secrets-store-csi-driver"
	workload     = "e2e.local/workload:1"
	pollInterval = 5 * time.Second // values.yaml rotationPollInterval
)

var chart = filepath.Join("..", "..", "deploy", "helm", "akv-provider")

// object is one entry of a SecretProviderClass and the file it must produce.
type object struct {
	name, typ, alias, mode string
}

func (o object) file() string {
	if o.alias != "" {
		return o.alias
	}
	return o.name
}

func objectsParam(objs []object) string {
	var b strings.Builder
	b.WriteString("array:\n")
	for _, o := range objs {
		fmt.Fprintf(&b, "  - |\n    objectName: %s\n    objectType: %s\n", o.name, o.typ)
		if o.alias != "" {
			fmt.Fprintf(&b, "    objectAlias: %s\n", o.alias)
		}
		if o.mode != "" {
			fmt.Fprintf(&b, "    filePermission: %q\n", "0"+o.mode)
		}
	}
	return b.String()
}

// spc renders a SecretProviderClass; params are added to the objects parameter.
func spc(ns, name string, objs []object, params map[string]string, secretObjects string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: %s, namespace: %s}\nspec:\n  provider: azure\n", name, ns)
	if secretObjects != "" {
		b.WriteString("  secretObjects:\n" + secretObjects)
	}
	b.WriteString("  parameters:\n")
	fmt.Fprintf(&b, "    keyvaultName: %s\n    tenantId: %s\n", vault, tenantID)
	for k, v := range params {
		fmt.Fprintf(&b, "    %s: %q\n", k, v)
	}
	b.WriteString("    objects: |\n")
	for _, l := range strings.Split(strings.TrimRight(objectsParam(objs), "\n"), "\n") {
		b.WriteString("      " + l + "\n")
	}
	return b.String()
}

// podSpec is a workload container that prints the SHA-256 of every mounted file at start and
// then sleeps; the test reads the files again with kubectl exec.
func podSpec(sa, spcName, secretRef string) string {
	ref := ""
	if secretRef != "" {
		ref = fmt.Sprintf("\n      nodePublishSecretRef: {name: %s}", secretRef)
	}
	return fmt.Sprintf(`serviceAccountName: %s
terminationGracePeriodSeconds: 1
containers:
  - name: app
    image: %s
    command: ["/bin/sh", "-c", "cd /mnt/secrets && sha256sum * && exec sleep 3600"]
    volumeMounts: [{name: secrets, mountPath: /mnt/secrets, readOnly: true}]
volumes:
  - name: secrets
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes: {secretProviderClass: %s}%s
`, sa, workload, spcName, ref)
}

func indent(s, pad string) string {
	return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad) + "\n"
}

// deployment is Deployment app of namespace ns: pods labelled app=<ns> that mount SecretProviderClass
// kv as service account app.
func deployment(ns string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: %[1]s}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
%[3]s`, ns, replicas, indent(podSpec("app", "kv", ""), "      "))
}

func pod(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, indent(spec, "  "))
}

func namespace(ns, sa, clientID string) string {
	ann := ""
	if clientID != "" {
		ann = fmt.Sprintf("\n  annotations: {azure.workload.identity/client-id: %s}", clientID)
	}
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: %s\n  namespace: %s%s\n", ns, sa, ns, ann)
}

func seed(e env, subjects ...string) *emulator.Seed {
	all := []string{"secret", "key", "certificate"}
	var fed []emulator.FederatedCredential
	for _, s := range subjects {
		fed = append(fed, emulator.FederatedCredential{Issuer: e.issuer, Subject: s, Audience: emulator.DefaultFederatedAudience})
	}
	return &emulator.Seed{
		TenantID: tenantID,
		Vaults: []emulator.Vault{{
			Name: vault,
			Secrets: []emulator.Secret{
				{Name: "db-password", Versions: []emulator.SecretVersion{{Value: "node-db-password-v1"}}},
				{Name: "api-key", Versions: []emulator.SecretVersion{{Value: "node-api-key"}}},
			},
			Keys:         []emulator.Key{{Name: "signing-rsa", Kty: "RSA", Size: 2048}},
			Certificates: []emulator.Certificate{{Name: "web", ContentType: emulator.ContentTypePEM, KeyType: "EC", Subject: "web.node.test"}},
		}},
		ServicePrincipals: []emulator.ServicePrincipal{
			{ClientID: wiClientID, Federated: fed},
			{ClientID: deniedClientID, Federated: fed},
			{ClientID: spClientID, Secrets: []string{spSecret}},
		},
		ManagedIdentities: []emulator.ManagedIdentity{{ClientID: miClientID}, {ClientID: ibClientID}},
		Issuers:           []emulator.Issuer{{URL: e.issuer, PublicKeyFile: e.saPub}},
		Grants: []emulator.Grant{
			{Identity: wiClientID, Vault: vault, Types: all},
			{Identity: spClientID, Vault: vault, Types: all},
			{Identity: miClientID, Vault: vault, Types: all},
			{Identity: ibClientID, Vault: vault, Types: all},
			{Identity: deniedClientID, Vault: vault, Types: []string{"key"}},
		},
	}
}

// expected is the SHA-256 of what each object's file must hold, computed from the emulator.
func expected(t *testing.T, kv *emulator.Emulator, objs []object) map[string]string {
	t.Helper()
	want := map[string]string{}
	for _, o := range objs {
		switch o.typ {
		case "secret":
			if vs := kv.SecretVersions(vault, o.name); len(vs) > 0 {
				want[o.file()] = sha(vs[len(vs)-1].Value)
				continue
			}
			m, err := kv.Certificate(vault, o.name, "")
			if err != nil {
				t.Fatal(err)
			}
			want[o.file()] = sha(m.SecretValue) // a PEM certificate's secret, written as stored
		case "key":
			pub, _, err := kv.PublicKey(vault, o.name, "")
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			want[o.file()] = sha(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
		case "cert":
			m, err := kv.Certificate(vault, o.name, "")
			if err != nil {
				t.Fatal(err)
			}
			want[o.file()] = sha(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Leaf.Raw})))
		}
	}
	return want
}

func TestNode(t *testing.T) {
	e, err := loadEnv()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(e.dir, "logs", "kv-emulator.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	// The emulator's log, also kept in memory with the time of each request (the burst counts them).
	reqs := &requestLog{out: log.New(lf, "", log.LstdFlags|log.Lmicroseconds)}
	kv, err := emulator.Start(emulator.Options{
		Seed: seed(e, "system:serviceaccount:wi:app", "system:serviceaccount:denied:app", "system:serviceaccount:restart:app"),
		// Pods reach the host on the node's address, not on loopback.
		Addr: e.nodeIP + ":0", ProxyAddr: e.nodeIP + ":0",
		Logf: reqs.logf,
	})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	defer kv.Close()
	t.Logf("emulator: %s, proxy %s, log %s", kv.URL(), kv.ProxyURL(), logPath)

	install(t, e, kv, release)

	objs := []object{
		{name: "db-password", typ: "secret", mode: "600"},
		{name: "api-key", typ: "secret", alias: "api-key.txt"},
		{name: "signing-rsa", typ: "key"},
		{name: "web", typ: "cert", alias: "web.crt"},
		{name: "web", typ: "secret", alias: "web-chain.pem"},
	}
	modes := map[string]string{"db-password": "600"}
	var wiPods []string
	ok := t.Run("workload identity: a Deployment of 3 replicas", func(t *testing.T) {
		wiPods = testDeployment(t, e, kv, reqs, objs, modes)
	})
	ok = ok && t.Run("managed identity and service principal pods", func(t *testing.T) { testOtherIdentities(t, e, kv, objs[:2], modes) })
	ok = ok && t.Run("rotation into running containers and the synced Secret", func(t *testing.T) { testRotation(t, e, kv, wiPods, objs, modes) })
	ok = ok && t.Run("denied object: FailedMount with our message", func(t *testing.T) { testDenied(t, e) })
	ok = ok && t.Run("provider pod deleted while mounts run", func(t *testing.T) { testProviderRestart(t, e, kv, wiPods, objs, modes) })
	if ok {
		t.Run("helm upgrade rolls the provider", func(t *testing.T) { testUpgrade(t, e, kv, wiPods, objs, modes) })
	}
	t.Run("helm uninstall removes what it created", func(t *testing.T) { testUninstall(t, e) })
}

// install helm-installs the chart and the driver as release name, with the emulator's proxy and
// CA given the way an operator gives a corporate proxy: linux.env and caBundle. extra are more
// helm arguments.
func install(t *testing.T, e env, kv *emulator.Emulator, name string, extra ...string) {
	t.Helper()
	e.emulatorCA(t, kv)
	proxy := kv.ProxyURL()
	start := time.Now()
	args := []string{"install", name, chart, "-n", releaseNS, "-f", filepath.Join("testdata", "values.yaml"),
		"--set", "caBundle.configMapName=kv-emulator-ca",
		"--set", "linux.env[0].name=HTTPS_PROXY", "--set", "linux.env[0].value=" + proxy,
		"--set", "linux.env[1].name=HTTP_PROXY", "--set", "linux.env[1].value=" + proxy,
		"--wait", "--timeout", "5m"}
	e.helmRun(t, append(args, extra...)...)
	waitDaemonSets(t, e)
	t.Logf("helm install + both DaemonSets ready in %s", time.Since(start).Round(time.Second))
}

// emulatorCA (re)creates the ConfigMap kv-emulator-ca that holds kv's CA, which the provider's
// pods trust (caBundle).
func (e env) emulatorCA(t *testing.T, kv *emulator.Emulator) {
	t.Helper()
	caFile := filepath.Join(e.dir, "emulator-ca.pem")
	if err := kv.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	e.must(t, "-n", releaseNS, "delete", "configmap", "kv-emulator-ca", "--ignore-not-found")
	e.must(t, "-n", releaseNS, "create", "configmap", "kv-emulator-ca", "--from-file=ca.crt="+caFile)
}

// waitDaemonSets waits until the provider's and the driver's DaemonSets have every pod ready:
// ready means the liveness/readiness endpoints answered (the provider's /healthz dials its socket).
func waitDaemonSets(t *testing.T, e env) {
	t.Helper()
	for _, sel := range []string{providerPods, driverPods} {
		eventually(t, 3*time.Minute, "DaemonSet "+sel+" ready", func(ctx context.Context) error {
			out, err := e.kubectl(ctx, "get", "ds", "-n", releaseNS, "-l", sel, "-o",
				"jsonpath={range .items[*]}{.metadata.name} {.status.desiredNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled}{end}")
			if err != nil {
				return err
			}
			f := strings.Fields(out)
			if len(f) != 4 || f[1] != "1" || f[2] != "1" || f[3] != "1" {
				return fmt.Errorf("DaemonSet (name desired ready updated): %q", out)
			}
			return nil
		})
	}
}

func testDeployment(t *testing.T, e env, kv *emulator.Emulator, reqs *requestLog, objs []object, modes map[string]string) []string {
	e.apply(t, namespace("wi", "app", wiClientID))
	e.apply(t, spc("wi", "kv", objs, map[string]string{"clientID": wiClientID}, `    - secretName: db-synced
      type: Opaque
      data:
        - {objectName: db-password, key: password}
`))
	want := expected(t, kv, objs)
	e.apply(t, deployment("wi", 0))
	testBurst(t, e, kv, reqs, objs)
	pods := e.podNames(t, "wi", "app=wi")
	if len(pods) != 3 {
		t.Fatalf("want 3 pods, got %v", pods)
	}
	for _, p := range pods {
		checkPod(t, e, "wi", p, want, modes)
		t.Logf("pod wi/%s printed:\n%s", p, e.must(t, "logs", "-n", "wi", p))
	}
	return pods
}

// checkPod compares a pod's files with want, retrying while the driver may still be writing.
func checkPod(t *testing.T, e env, ns, p string, want, modes map[string]string) {
	t.Helper()
	eventually(t, 30*time.Second, "files of pod "+ns+"/"+p, func(ctx context.Context) error {
		got, err := e.mountedFiles(ctx, ns, p, "/mnt/secrets")
		if err != nil {
			return err
		}
		return checkFiles(ns, p, got, want, modes)
	})
}

func testOtherIdentities(t *testing.T, e env, kv *emulator.Emulator, objs []object, modes map[string]string) {
	want := expected(t, kv, objs)
	e.apply(t, namespace("mi", "app", ""))
	e.apply(t, spc("mi", "kv", objs, map[string]string{"useVMManagedIdentity": "true", "userAssignedIdentityID": miClientID}, ""))
	e.apply(t, pod("mi", "app", podSpec("app", "kv", "")))
	e.apply(t, namespace("sp", "app", ""))
	e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: sp-creds, namespace: sp, labels: {secrets-store.csi.k8s.io/used: \"true\"}}\nstringData: {clientid: %s, clientsecret: %s}\n", spClientID, spSecret))
	e.apply(t, spc("sp", "kv", objs, nil, ""))
	e.apply(t, pod("sp", "app", podSpec("app", "kv", "sp-creds")))
	for _, ns := range []string{"mi", "sp"} {
		e.waitReady(t, ns, "wait", "--for=condition=Ready", "pod/app", "--timeout=2m")
		checkPod(t, e, ns, "app", want, modes)
	}
	c := kv.Counters()
	if c.TokenRequestsByClient[miClientID] < 1 || c.TokenRequestsByClient[spClientID] < 1 {
		t.Errorf("token requests %v: want the managed identity %s and the service principal %s", c.TokenRequestsByClient, miClientID, spClientID)
	}
}

func testRotation(t *testing.T, e env, kv *emulator.Emulator, pods []string, objs []object, modes map[string]string) {
	const value = "node-db-password-v2"
	if _, err := kv.AddSecretVersion(vault, "db-password", value); err != nil {
		t.Fatal(err)
	}
	want := expected(t, kv, objs)
	took := eventually(t, 2*pollInterval+10*time.Second, "the new version in every running replica", func(ctx context.Context) error {
		for _, p := range pods {
			got, err := e.mountedFiles(ctx, "wi", p, "/mnt/secrets")
			if err != nil {
				return err
			}
			if err := checkFiles("wi", p, got, want, modes); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("new version in all 3 running containers after %s (poll interval %s)", took.Round(time.Millisecond), pollInterval)
	if took > 2*pollInterval+3*time.Second {
		t.Errorf("rotation took %s, want within two poll intervals (%s) plus 3 s of checking", took, 2*pollInterval)
	}
	eventually(t, 2*pollInterval+10*time.Second, "the synced Secret wi/db-synced", func(ctx context.Context) error {
		out, err := e.kubectl(ctx, "get", "secret", "-n", "wi", "db-synced", "-o", "jsonpath={.data.password}")
		if err != nil {
			return err
		}
		if want := b64(value); out != want {
			return fmt.Errorf("secret wi/db-synced data.password = %q, want %q", out, want)
		}
		return nil
	})
	// A new pod reads the rotated value from the synced Secret through env.
	e.apply(t, pod("wi", "env-reader", `serviceAccountName: app
terminationGracePeriodSeconds: 1
containers:
  - name: app
    image: `+workload+`
    command: ["/bin/sh", "-c", "printf %s \"$DB_PASSWORD\" | sha256sum && exec sleep 3600"]
    env: [{name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db-synced, key: password}}}]
`))
	e.waitReady(t, "wi", "wait", "--for=condition=Ready", "pod/env-reader", "--timeout=2m")
	eventually(t, 30*time.Second, "env-reader's printed hash", func(ctx context.Context) error {
		out, err := e.kubectl(ctx, "logs", "-n", "wi", "env-reader")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(out, sha(value)) {
			return fmt.Errorf("pod wi/env-reader: env DB_PASSWORD has SHA-256 %q, want %s", strings.TrimSpace(out), sha(value))
		}
		return nil
	})
}

func testDenied(t *testing.T, e env) {
	e.apply(t, namespace("denied", "app", deniedClientID))
	e.apply(t, spc("denied", "kv", []object{{name: "db-password", typ: "secret"}}, map[string]string{"clientID": deniedClientID}, ""))
	e.apply(t, pod("denied", "app", podSpec("app", "kv", "")))
	var msg string
	eventually(t, 2*time.Minute, "a FailedMount event on denied/app", func(ctx context.Context) error {
		msgs, err := e.events(ctx, "denied", "app", "FailedMount")
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if strings.Contains(m, "Key Vault Secrets User") {
				msg = m
				return nil
			}
		}
		return fmt.Errorf("FailedMount events %q: none names the missing role (Key Vault Secrets User)", msgs)
	})
	t.Logf("FailedMount: %s", msg)
	for _, s := range []string{vault, "db-password", deniedClientID} {
		if !strings.Contains(msg, s) {
			t.Errorf("FailedMount message does not name %q: %s", s, msg)
		}
	}
	phase := e.must(t, "get", "pod", "-n", "denied", "app", "-o", "jsonpath={.status.phase}")
	if phase != "Pending" {
		t.Errorf("pod denied/app is %s, want Pending (ContainerCreating)", phase)
	}
	e.must(t, "delete", "namespace", "denied", "--wait=false")
}

func testProviderRestart(t *testing.T, e env, kv *emulator.Emulator, running []string, objs []object, modes map[string]string) {
	want := expected(t, kv, objs)
	old := e.podNames(t, releaseNS, providerPods)
	e.apply(t, namespace("restart", "app", wiClientID))
	e.apply(t, spc("restart", "kv", objs, map[string]string{"clientID": wiClientID}, ""))
	// Delete the provider and start mounts at once: they fail until the DaemonSet's new pod
	// serves the socket, and the kubelet retries them.
	e.must(t, "delete", "pod", "-n", releaseNS, "-l", providerPods, "--wait=false")
	for i := 0; i < 3; i++ {
		e.apply(t, pod("restart", fmt.Sprintf("app-%d", i), podSpec("app", "kv", "")))
	}
	start := time.Now()
	for i := 0; i < 3; i++ {
		e.waitReady(t, "restart", "wait", "--for=condition=Ready", fmt.Sprintf("pod/app-%d", i), "--timeout=3m")
		checkPod(t, e, "restart", fmt.Sprintf("app-%d", i), want, modes)
	}
	t.Logf("3 mounts started during the provider's restart Running after %s", time.Since(start).Round(time.Second))
	waitDaemonSets(t, e)
	if now := e.podNames(t, releaseNS, providerPods); len(now) != 1 || now[0] == old[0] {
		t.Errorf("provider pods %v after deleting %v: want one new pod", now, old)
	}
	for _, p := range running {
		checkPod(t, e, "wi", p, want, modes)
	}
}

func testUpgrade(t *testing.T, e env, kv *emulator.Emulator, running []string, objs []object, modes map[string]string) {
	want := expected(t, kv, objs)
	old := e.podNames(t, releaseNS, providerPods)
	e.helmRun(t, "upgrade", release, chart, "-n", releaseNS, "--reuse-values", "--set", "logVerbosity=4", "--wait", "--timeout", "5m")
	eventually(t, 3*time.Minute, "the provider rolled with -v=4", func(ctx context.Context) error {
		out, err := e.kubectl(ctx, "get", "pods", "-n", releaseNS, "-l", providerPods, "-o",
			"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.containers[0].args}{\"\\n\"}{end}")
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || strings.HasPrefix(lines[0], old[0]+" ") || !strings.Contains(lines[0], "-v=4") || !strings.Contains(lines[0], "Running") {
			return fmt.Errorf("provider pods: %q (old %s)", out, old[0])
		}
		return nil
	})
	waitDaemonSets(t, e)
	for _, p := range running {
		checkPod(t, e, "wi", p, want, modes)
	}
	e.apply(t, pod("wi", "after-upgrade", podSpec("app", "kv", "")))
	e.waitReady(t, "wi", "wait", "--for=condition=Ready", "pod/after-upgrade", "--timeout=2m")
	checkPod(t, e, "wi", "after-upgrade", want, modes)
}

func testUninstall(t *testing.T, e env) {
	manifest := e.helmRun(t, "get", "manifest", release, "-n", releaseNS)
	// Pods first, so their volumes are unpublished while the driver still runs.
	for _, ns := range []string{"wi", "mi", "sp", "restart", "denied"} {
		e.must(t, "delete", "namespace", ns, "--ignore-not-found", "--timeout=3m")
	}
	e.helmRun(t, "uninstall", release, "-n", releaseNS, "--wait", "--timeout", "3m")
	var left []string
	for _, doc := range strings.Split(manifest, "\n---") {
		var kind, name, ns string
		for _, l := range strings.Split(doc, "\n") {
			switch {
			case strings.HasPrefix(l, "kind: "):
				kind = strings.TrimPrefix(l, "kind: ")
			case strings.HasPrefix(l, "  name: ") && name == "":
				name = strings.Trim(strings.TrimPrefix(l, "  name: "), `"`)
			case strings.HasPrefix(l, "  namespace: ") && ns == "":
				ns = strings.Trim(strings.TrimPrefix(l, "  namespace: "), `"`)
			}
		}
		if kind == "" || name == "" {
			continue
		}
		args := []string{"get", kind, name, "--ignore-not-found", "-o", "name"}
		if ns != "" {
			args = append(args, "-n", ns)
		}
		if out := strings.TrimSpace(e.must(t, args...)); out != "" {
			left = append(left, out)
		}
	}
	if len(left) > 0 {
		t.Errorf("helm uninstall left %v", left)
	}
	if out := strings.TrimSpace(e.must(t, "get", "pods", "-n", releaseNS, "-l", providerPods, "-o", "name")); out != "" {
		t.Errorf("provider pods left after uninstall: %s", out)
	}
}
