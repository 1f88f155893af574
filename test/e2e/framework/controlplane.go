//go:build e2e

package framework

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ControlPlane is etcd plus kube-apiserver on loopback, with service-account token signing so
// TokenRequest works (projected tokens for audience api://AzureADTokenExchange).
type ControlPlane struct {
	URL        string // https://127.0.0.1:<port>
	Kubeconfig string // admin kubeconfig (token auth, system:masters)
	Issuer     string // --service-account-issuer
	SAKeyPub   string // PEM file of the service-account signing key's public half
	CAFile     string // the apiserver's self-signed serving certificate (and its CA)
	Kube       *Kube
	Dir        string
	etcd       *Process
	apiserver  *Process
}

// ControlPlaneInput configures StartControlPlane.
type ControlPlaneInput struct {
	Config Config
	// Issuer defaults to https://kubernetes.default.svc.cluster.local.
	Issuer string
}

const adminToken = "e2e-admin-token" //nolint:gosec // a loopback test apiserver's static token

// StartControlPlane starts etcd and kube-apiserver and waits for /readyz. Both are stopped in
// t.Cleanup. etcd keeps its data on /dev/shm when it exists (etcd 3.4 has no --unsafe-no-fsync).
func StartControlPlane(t testing.TB, in ControlPlaneInput) *ControlPlane {
	t.Helper()
	Require(t, in.Config.Etcd, in.Config.KubeAPIServer)
	if in.Issuer == "" {
		in.Issuer = "https://kubernetes.default.svc.cluster.local"
	}
	dir := TempDir(t, "", "e2e-cp-")
	logs := filepath.Join(dir, "logs")
	pki := filepath.Join(dir, "pki")
	for _, d := range []string{logs, pki} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cp := &ControlPlane{Dir: dir, Issuer: in.Issuer}

	// etcd
	start := time.Now()
	etcdData := filepath.Join(TempDir(t, fastDir(), "e2e-etcd-"), "data")
	clientPort, peerPort := FreePort(t), FreePort(t)
	client := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	cp.etcd = StartProcess(t, ProcessInput{Name: "etcd", Path: in.Config.Etcd, LogDir: logs, Args: []string{
		"--name=e2e", "--data-dir=" + etcdData,
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=e2e=" + peer, "--log-level=warn",
	}})
	ctx := context.Background()
	if err := WaitFor(ctx, 30*time.Second, "etcd health", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, http.DefaultClient, client+"/health")
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd ready in %s", time.Since(start).Round(time.Millisecond))

	// service-account signing key
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(pki, "sa.key")
	cp.SAKeyPub = filepath.Join(pki, "sa.pub")
	writePEM(t, saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600)
	writePEM(t, cp.SAKeyPub, "PUBLIC KEY", pub, 0o644)
	tokens := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// kube-apiserver
	start = time.Now()
	port := FreePort(t)
	certDir := filepath.Join(pki, "serving")
	cp.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	cp.apiserver = StartProcess(t, ProcessInput{Name: "kube-apiserver", Path: in.Config.KubeAPIServer, LogDir: logs, Args: []string{
		"--etcd-servers=" + client,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--token-auth-file=" + tokens, "--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + in.Issuer,
		"--service-account-key-file=" + cp.SAKeyPub, "--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none", "--allow-privileged=true",
		"--profiling=false", "--v=1",
	}})
	cp.CAFile = filepath.Join(certDir, "apiserver.crt")
	if err := WaitFor(ctx, 30*time.Second, "kube-apiserver serving certificate", func(context.Context) (bool, error) {
		if ok, err := processAlive(cp.apiserver); !ok {
			return false, err
		}
		_, err := os.Stat(cp.CAFile)
		return err == nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	cp.Kube, err = NewKube(cp.URL, cp.CAFile, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitFor(ctx, 60*time.Second, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		if ok, err := processAlive(cp.apiserver); !ok {
			return false, err
		}
		_, err := cp.Kube.Raw(ctx, http.MethodGet, "/readyz", nil)
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver ready in %s at %s", time.Since(start).Round(time.Millisecond), cp.URL)

	cp.Kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, cp.URL, cp.CAFile, adminToken)
	if err := os.WriteFile(cp.Kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return cp
}

// fastDir returns /dev/shm when it has room for etcd's preallocated 64 MB WAL files (container
// defaults are 64 MB in all), else "" (the default temp dir).
func fastDir() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Bsize <= 0 || st.Bavail < (1<<30)/uint64(st.Bsize) {
		return ""
	}
	return "/dev/shm"
}

func processAlive(p *Process) (bool, error) {
	if exited, err := p.Exited(); exited {
		return false, fmt.Errorf("%s exited (see %s): %w", p.Name, p.LogPath, err)
	}
	return true, nil
}

func httpOK(ctx context.Context, hc *http.Client, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return true, nil
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}
