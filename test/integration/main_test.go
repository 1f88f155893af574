// Package integration runs the real provider gRPC server on a temp socket, called with the driver's
// v1alpha1 types exactly as the driver calls it, against the emulator over HTTPS with the real
// azidentity credentials and Key Vault clients. The provider is configured as in production: the
// only redirection is the environment an operator would set (HTTPS_PROXY/HTTP_PROXY pointing at the
// emulator's proxy, SSL_CERT_FILE trusting its CA) and SecretProviderClass parameters (the
// AzureStackCloud route).
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/provider"
	"github.com/akv-csi/provider/pkg/server"
)

// em is the one emulator of this test process: SSL_CERT_FILE and the proxy environment are read
// once per process, so every test shares it. Tests that change its faults or read its counters
// do not run in parallel.
var em *emulator.Emulator

// logs collects everything the provider logs, to check that no secret reaches a log.
var logs syncBuffer

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "akv-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	em, err = emulator.Start(emulator.Options{Seed: seed()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start emulator:", err)
		return 1
	}
	defer em.Close()
	// What an operator sets on the provider's container.
	if err := em.PointProcessAt(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", "10") // the most verbose level: the log scan below covers every line the provider can write
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(&logs)

	code := m.Run()
	klog.Flush()
	if leaked := leakedSecrets(logs.String()); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the provider's logs contain secret material: %q\n", leaked)
		return 1
	}
	if !strings.Contains(logs.String(), "mount failed") && !strings.Contains(logs.String(), "mount succeeded") {
		fmt.Fprintln(os.Stderr, "FAIL: the provider logged no mount outcome; the log check above checked nothing")
		return 1
	}
	return code
}

// leakedSecrets lists seeded secret values, client secrets and tokens found in s.
func leakedSecrets(s string) []string {
	var found []string
	for _, v := range secretValues() {
		if strings.Contains(s, v) {
			found = append(found, v)
		}
	}
	for _, marker := range []string{"eyJ", "BEGIN PRIVATE KEY", spSecret} {
		if strings.Contains(s, marker) {
			found = append(found, marker)
		}
	}
	return found
}

// fastRetry keeps 5xx retries quick; production uses azcore's defaults.
var fastRetry = policy.RetryOptions{MaxRetries: 2, RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond}

// startProvider runs the real gRPC server on a temp socket and returns a driver-side client.
func startProvider(t *testing.T, o provider.Options) v1alpha1.CSIDriverProviderClient {
	t.Helper()
	if o.KeyVault.Retry.MaxRetries == 0 {
		o.KeyVault.Retry = fastRetry
	}
	o.ConstructPEMChain = true
	p := provider.New(o)
	socket := filepath.Join(t.TempDir(), "azure.sock")
	l, err := server.Listen("unix://" + socket)
	if err != nil {
		t.Fatal(err)
	}
	g := server.NewGRPC(server.NewService(p, config.Defaults{CloudName: config.AzurePublicCloud}, nil), 0, nil)
	go func() { _ = g.Server.Serve(l) }()
	t.Cleanup(g.Server.Stop)

	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return v1alpha1.NewCSIDriverProviderClient(conn)
}

// mountRequest is what the driver sends: the SecretProviderClass parameters merged with the pod's
// volume context, the nodePublishSecretRef secret, and the file mode, each JSON-encoded.
type mountRequest struct {
	params  map[string]string
	secrets map[string]string
	token   string // service account token for api://AzureADTokenExchange
}

func (r mountRequest) build(t *testing.T) *v1alpha1.MountRequest {
	t.Helper()
	attrs := map[string]string{
		"csi.storage.k8s.io/pod.name":            "app-0",
		"csi.storage.k8s.io/pod.namespace":       "default",
		"csi.storage.k8s.io/pod.uid":             "0b4a3c1e-0000-4000-8000-000000000001",
		"csi.storage.k8s.io/serviceAccount.name": "app-sa",
		"csi.storage.k8s.io/ephemeral":           "false",
		"secretProviderClass":                    "azure-kv",
	}
	if r.token != "" {
		tokens, _ := json.Marshal(map[string]map[string]string{
			config.WorkloadIdentityAudience: {"token": r.token, "expirationTimestamp": time.Now().Add(time.Hour).Format(time.RFC3339)},
		})
		attrs[config.ServiceAccountTokens] = string(tokens)
	}
	for k, v := range r.params {
		attrs[k] = v
	}
	secrets := r.secrets
	if secrets == nil {
		secrets = map[string]string{}
	}
	a, _ := json.Marshal(attrs)
	s, _ := json.Marshal(secrets)
	perm, _ := json.Marshal(os.FileMode(0o644))
	return &v1alpha1.MountRequest{Attributes: string(a), Secrets: string(s), Permission: string(perm), TargetPath: t.TempDir()}
}

func objects(entries ...string) string {
	var b strings.Builder
	b.WriteString("array:\n")
	for _, e := range entries {
		b.WriteString("  - |\n")
		for _, line := range strings.Split(e, "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	return b.String()
}

// wiToken signs a service account token for the workload identity of namespace/sa.
func wiToken(t *testing.T, namespace, sa string) string {
	t.Helper()
	tok, err := em.SignServiceAccountToken(namespace, sa, config.WorkloadIdentityAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func mount(t *testing.T, c v1alpha1.CSIDriverProviderClient, r mountRequest) (*v1alpha1.MountResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Mount(ctx, r.build(t))
}

// mustMount mounts r and ends the test if the mount fails.
func mustMount(t *testing.T, c v1alpha1.CSIDriverProviderClient, r mountRequest) *v1alpha1.MountResponse {
	t.Helper()
	resp, err := mount(t, c, r)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	return resp
}

// files indexes a response by path.
func files(resp *v1alpha1.MountResponse) map[string]*v1alpha1.File {
	out := map[string]*v1alpha1.File{}
	for _, f := range resp.GetFiles() {
		out[f.GetPath()] = f
	}
	return out
}
