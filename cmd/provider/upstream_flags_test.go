package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/emulator"
)

const (
	flagsTenant = "aaaaaaaa-2222-4000-8000-000000000001"
	flagsVault  = "kv-flags"
	flagsApp    = "5b0a0000-0000-4000-8000-0000000000f1" // federated with default/app-sa
	flagsSecret = "s3cr3t-value-Qm4"
	customUA    = "team-a/1.0 (aks; upstream-flags)"
)

// TestUpstreamFlagSet starts the provider binary with the arguments of Azure's
// deployment/provider-azure-installer.yaml plus every optional flag of Azure's provider v1.8.2,
// routed to the emulator as an operator would route it (HTTPS_PROXY, SSL_CERT_FILE), and checks
// each flag's effect: /healthz on --healthz-port, /metrics on --prometheus-port, pprof on
// 127.0.0.1:--pprof-port and on no other address, a workload identity mount over the driver's
// gRPC API with the certificate's .crt and .key, --custom-user-agent on the Key Vault and Entra
// ID requests the emulator received, and -v=2 lines in JSON.
func TestUpstreamFlagSet(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: it builds the provider binary (about 10 s); make test runs it")
	}
	dir := t.TempDir()
	bin := buildProvider(t, dir)

	em, err := emulator.Start(emulator.Options{Seed: flagsSeed()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	caFile := filepath.Join(dir, "ca.pem")
	if err := em.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}

	socket := filepath.Join(dir, "azure.sock")
	healthzPort, promPort, pprofPort := freePort(t, ""), freePort(t, ""), freePort(t, "127.0.0.1")
	args := []string{
		// deployment/provider-azure-installer.yaml
		"--endpoint=unix://" + socket,
		"--construct-pem-chain=true",
		"--healthz-port=" + healthzPort,
		"--healthz-path=/healthz",
		"--healthz-timeout=5s",
		// every other flag of v1.8.2
		"--log-format-json=true",
		"-v=2",
		"--custom-user-agent=" + customUA,
		"--enable-pprof=true",
		"--pprof-port=" + pprofPort,
		"--metrics-backend=Prometheus",
		"--prometheus-port=" + promPort,
		"--write-cert-and-key-in-separate-files=true",
		"--cloud-name=AzurePublicCloud",
		"--token-proxy-url=https://kubernetes.default.svc.cluster.local",
		"--sni-name=a1b2c3d4.ests.aks",
	}
	logFile := filepath.Join(dir, "provider.log")
	stop := startProvider(t, bin, logFile, []string{
		"HTTPS_PROXY=" + em.ProxyURL(), "HTTP_PROXY=" + em.ProxyURL(), "NO_PROXY=", "SSL_CERT_FILE=" + caFile,
	}, args)

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	waitFor(t, "the provider's socket", func() error { _, err := os.Stat(socket); return err })
	waitFor(t, "/healthz on --healthz-port", func() error {
		return httpOK(hc, "http://127.0.0.1:"+healthzPort+"/healthz", "ok")
	})

	// A mount through the driver's API, with workload identity.
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	token, err := em.SignServiceAccountToken("default", "app-sa", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := v1alpha1.NewCSIDriverProviderClient(conn).Mount(ctx, flagsMountRequest(t, token))
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	got := map[string]string{}
	for _, f := range resp.GetFiles() {
		got[f.GetPath()] = string(f.GetContents())
	}
	if got["db-pass"] != flagsSecret {
		t.Errorf("db-pass: %q", got["db-pass"])
	}
	for file, want := range map[string][]string{
		"web":     {"PRIVATE KEY", "CERTIFICATE"},
		"web.crt": {"CERTIFICATE"}, // --write-cert-and-key-in-separate-files
		"web.key": {"PRIVATE KEY"}, // --write-cert-and-key-in-separate-files
	} {
		for _, w := range want {
			if !strings.Contains(got[file], "-----BEGIN "+w) {
				t.Errorf("%s has no %s block (files: %v)", file, w, keys(got))
			}
		}
	}
	if strings.Contains(got["web.crt"], "PRIVATE KEY") || strings.Contains(got["web.key"], "CERTIFICATE") {
		t.Error("web.crt or web.key holds the other half")
	}

	// --custom-user-agent: appended to what the SDK sends, on every Key Vault and Entra ID request.
	var kvOK, tokenOK int
	for _, r := range em.Requests() {
		if !strings.HasSuffix(r.UserAgent, " "+customUA) || !strings.Contains(r.UserAgent, "azsdk-go-") {
			t.Errorf("%s %s %s%s: User-Agent %q does not end with the SDK's agent and %q", r.Kind, r.Method, r.Host, r.Path, r.UserAgent, customUA)
		}
		switch {
		case r.Kind == "keyvault" && r.Status == http.StatusOK:
			kvOK++
		case r.Kind == "entra" && strings.HasSuffix(r.Path, "/oauth2/v2.0/token") && r.Status == http.StatusOK:
			tokenOK++
		}
	}
	if kvOK == 0 || tokenOK == 0 {
		t.Errorf("the emulator recorded %d successful Key Vault reads and %d token requests, want both: %+v", kvOK, tokenOK, em.Requests())
	}

	// --prometheus-port serves the provider's registry, and nothing else.
	if err := httpOK(hc, "http://127.0.0.1:"+promPort+"/metrics", "akv_provider_mount_duration_seconds"); err != nil {
		t.Error(err)
	}
	// --enable-pprof: on 127.0.0.1, and not on the other servers' muxes.
	if err := httpOK(hc, "http://127.0.0.1:"+pprofPort+"/debug/pprof/", "goroutine"); err != nil {
		t.Error(err)
	}
	for _, port := range []string{healthzPort, promPort} {
		if code := httpStatus(hc, "http://127.0.0.1:"+port+"/debug/pprof/"); code != http.StatusNotFound {
			t.Errorf("/debug/pprof/ on port %s: %d, want 404", port, code)
		}
	}
	// ... and on no other address of this host.
	if ip := nonLoopbackIP(); ip != nil {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), promPort), 5*time.Second); err != nil {
			t.Errorf("metrics on all interfaces: %s:%s: %v", ip, promPort, err)
		} else {
			_ = c.Close()
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), pprofPort), 5*time.Second); err == nil {
			_ = c.Close()
			t.Errorf("pprof answers on %s:%s, a non-loopback address", ip, pprofPort)
		}
	} else {
		t.Log("this host has no non-loopback address; checking pprof's listen address in the log instead")
	}

	if err := stop(); err != nil {
		t.Errorf("provider after SIGTERM: %v", err)
	}
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logs), flagsSecret) || strings.Contains(string(logs), token) {
		t.Error("the log contains the secret value or the service account token")
	}
	// --log-format-json with -v=2: every line JSON, the V(2) line per mount included.
	lines := jsonLines(t, string(logs))
	if l := findLine(lines, "mount succeeded"); l == nil || l["v"] != float64(2) || l["vault"] != flagsVault {
		t.Errorf("no JSON \"mount succeeded\" line with v=2 for vault %s: %v\n%s", flagsVault, l, logs)
	}
	if l := findLine(lines, "listening"); l == nil || l["pprofAddr"] != "127.0.0.1:"+pprofPort || l["metricsAddr"] != ":"+promPort {
		t.Errorf("listening line: %v", l)
	}
	for _, l := range lines {
		if v, ok := l["v"].(float64); ok && v > 2 {
			t.Errorf("a V(%v) line at -v=2: %v", v, l)
		}
	}
}

// buildProvider builds this package's binary as make build does, minus the version stamps.
func buildProvider(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "provider")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the provider: %v", err)
	}
	cmd := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProvider runs bin with args and extra environment; stop sends SIGTERM and returns how the
// process exited (it is killed after 15 s).
func startProvider(t *testing.T, bin, logFile string, env, args []string) (stop func() error) {
	t.Helper()
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = append(os.Environ(), env...), log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); log.Close() }()
	var result error
	stopped := false
	stop = func() error {
		if stopped {
			return result
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case result = <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			result = fmt.Errorf("did not exit within 15 s of SIGTERM (then killed: %w)", <-done)
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpOK GETs url and wants 200 with want in the body.
func httpOK(hc *http.Client, url, want string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s, body without %q", url, resp.Status, want)
	}
	return nil
}

func httpStatus(hc *http.Client, url string) int {
	resp, err := hc.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// nonLoopbackIP is an address of this host other than loopback and link-local, IPv4 first, or nil.
func nonLoopbackIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.IsUnspecified() || n.IP.IsMulticast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP
		}
		if v6 == nil {
			v6 = n.IP
		}
	}
	return v6
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func flagsSeed() *emulator.Seed {
	return &emulator.Seed{
		TenantID: flagsTenant,
		Vaults: []emulator.Vault{{
			Name:         flagsVault,
			Secrets:      []emulator.Secret{{Name: "db-pass", Versions: []emulator.SecretVersion{{Value: flagsSecret, ContentType: "text/plain"}}}},
			Certificates: []emulator.Certificate{{Name: "web", Subject: "web.flags.test"}},
		}},
		ServicePrincipals: []emulator.ServicePrincipal{{ClientID: flagsApp, Federated: []emulator.FederatedCredential{
			{Issuer: emulator.BuiltinIssuer, Subject: "system:serviceaccount:default:app-sa"},
		}}},
		Grants: []emulator.Grant{{Identity: flagsApp, Vault: flagsVault, Types: []string{"secret", "key", "certificate"}}},
	}
}

// flagsMountRequest is what the driver sends for a pod of default/app-sa with a SecretProviderClass
// for workload identity: parameters merged with the pod's volume context, each map JSON-encoded.
func flagsMountRequest(t *testing.T, token string) *v1alpha1.MountRequest {
	t.Helper()
	tokens, err := json.Marshal(map[string]map[string]string{
		"api://AzureADTokenExchange": {"token": token, "expirationTimestamp": time.Now().Add(time.Hour).Format(time.RFC3339)},
	})
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{
		"keyvaultName": flagsVault,
		"tenantId":     flagsTenant,
		"clientID":     flagsApp,
		"objects": "array:\n" +
			"  - |\n    objectName: db-pass\n    objectType: secret\n" +
			"  - |\n    objectName: web\n    objectType: secret\n",
		"csi.storage.k8s.io/pod.name":              "app-0",
		"csi.storage.k8s.io/pod.namespace":         "default",
		"csi.storage.k8s.io/pod.uid":               "0b4a3c1e-0000-4000-8000-0000000000f1",
		"csi.storage.k8s.io/serviceAccount.name":   "app-sa",
		"csi.storage.k8s.io/serviceAccount.tokens": string(tokens),
		"csi.storage.k8s.io/ephemeral":             "false",
		"secretProviderClass":                      "azure-kv",
	}
	a, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	perm, err := json.Marshal(os.FileMode(0o644))
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.MountRequest{Attributes: string(a), Secrets: "{}", Permission: string(perm), TargetPath: t.TempDir()}
}
