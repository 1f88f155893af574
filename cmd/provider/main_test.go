package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/version"
)

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"--version"}, &out); err != nil {
		t.Fatal(err)
	}
	var info version.Info
	if err := json.Unmarshal(out.Bytes(), &info); err != nil || info.Version != version.BuildVersion || info.GoVersion == "" {
		t.Errorf("--version printed %q (%v)", out.String(), err)
	}
}

func TestMaxProcs(t *testing.T) {
	for _, c := range []struct {
		env  string
		args []string
		want int
	}{
		{"", nil, DefaultMaxProcs},
		{"", []string{"--max-procs", "3"}, 3},
		{"", []string{"--max-procs", "0"}, 0},
		{"4", nil, 0}, // the operator's GOMAXPROCS stays
		{"4", []string{"--max-procs", "2"}, 2},
	} {
		t.Setenv("GOMAXPROCS", c.env)
		o, err := parseFlags(c.args, &bytes.Buffer{})
		if err != nil || o.MaxProcs != c.want {
			t.Errorf("GOMAXPROCS=%q %q: MaxProcs %d (%v), want %d", c.env, c.args, o.MaxProcs, err, c.want)
		}
	}
}

// TestAzureStackCloudNeedsItsFile: --cloud-name AzureStackCloud reads AZURE_ENVIRONMENT_FILEPATH at
// start, as Azure's provider does, and refuses to start without a usable file.
func TestAzureStackCloudNeedsItsFile(t *testing.T) {
	good := filepath.Join(t.TempDir(), "stack.json")
	if err := os.WriteFile(good, []byte(`{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://login.stack.example/","keyVaultDNSSuffix":"vault.stack.example"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, wantErr string }{
		{"", "needs the environment variable AZURE_ENVIRONMENT_FILEPATH"},
		{"/nonexistent/stack.json", "/nonexistent/stack.json"},
		{good, ""},
	} {
		t.Setenv(config.AzureEnvironmentFileVar, tt.file)
		o, err := parseFlags([]string{"--cloud-name", "azurestackcloud"}, &bytes.Buffer{})
		switch {
		case tt.wantErr == "" && (err != nil || o.CloudEnvFile != good):
			t.Errorf("file %q: %v, CloudEnvFile %q", tt.file, err, o.CloudEnvFile)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("file %q: %v, want an error containing %q", tt.file, err, tt.wantErr)
		}
	}
	// Another default cloud does not need it, but mounts that name AzureStackCloud get it.
	t.Setenv(config.AzureEnvironmentFileVar, good)
	if o, err := parseFlags(nil, &bytes.Buffer{}); err != nil || o.CloudEnvFile != good {
		t.Errorf("public cloud: %v, CloudEnvFile %q", err, o.CloudEnvFile)
	}
}

func TestInvalidFlagsAreErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--endpoint", "/tmp/x.sock"},
		{"--cloud-name", "Mars"},
		{"--healthz-port", "70000"},
		{"--parallel-fetches", "0"},
		{"--max-procs", "-1"},
		{"--max-selected-objects", "0"},
		{"--max-selected-objects", "1001"},
		{"--result-cache-ttl", "1m"},
		{"--vault-rate-limit", "0"},
		{"--no-such-flag"},
		{"extra"},
		{"--metrics-backend", "otlp"},
		{"--metrics-backend", "Stackdriver"},
		{"--metrics-backend", ""},
		{"--prometheus-port", "70000"},
		{"--prometheus-port", "-1"},
		{"--metrics-addr", ":8898"}, // ours before; Azure's provider has only --prometheus-port
		{"--max-response-bytes", "100"},
		{"--pprof-port", "0"},
		{"--pprof-port", "65536"},
		{"--custom-user-agent", "ok\r\nX-Injected: 1"},
		{"--custom-user-agent", "tab\there"},
		{"--custom-user-agent", "del\x7f"},
		{"--custom-user-agent", "\xff\xfe"},
		{"--token-proxy-url", "http://kubernetes.default.svc"},
		{"--token-proxy-url", "kubernetes.default.svc"},
		{"--token-proxy-url", "https://user:pw@proxy.example"},
		{"--token-proxy-url", "https://proxy.example/?a=b"},
		{"--token-proxy-url", "https://proxy.example/#frag"},
		{"--token-proxy-url", "https://"},
		{"--sni-name", "not a name"},
		{"--sni-name", "under_score.example"},
		{"--sni-name", "-dash.example"},
		{"--sni-name", "trailing.dot."},
		{"--sni-name", "10.0.0.1"},
		{"--sni-name", strings.Repeat("a", 64) + ".example"},
		{"--max-concurrent-mounts", "0"},
		{"--managed-identity-namespaces", "team-a,*"},
		{"--healthz-bind-address", "node.example"},
		{"--metrics-bind-address", "0.0.0.0:8898"},
		{"--endpoint", "tcp://0.0.0.0:9000"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	o, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || o.Endpoint != "unix:///tmp/azure.sock" || o.HealthzPort != 8989 || !o.ConstructPEMChain || o.CloudName != "AzurePublicCloud" ||
		o.MetricsBackend != "Prometheus" || o.PrometheusPort != 8898 || o.MetricsAddr != ":8898" || o.EnablePprof || o.PprofPort != 6060 ||
		o.CustomUserAgent != "" || o.TokenProxyURL != "" || o.SNIName != "" {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

// TestOwnFlags: this provider's own flags parse into their options.
func TestOwnFlags(t *testing.T) {
	o, err := parseFlags([]string{"--max-concurrent-mounts=8", "--managed-identity-namespaces= team-a, kube-system ,", "--allow-managed-identity-selections",
		"--healthz-bind-address=127.0.0.1", "--metrics-bind-address=::1", "--prometheus-port=8899"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxConcurrentMounts != 8 || !o.AllowManagedIdentitySelections || o.HealthzBindAddress != "127.0.0.1" || o.MetricsAddr != "[::1]:8899" ||
		!slices.Equal(o.ManagedIdentityNamespaces, []string{"team-a", "kube-system"}) {
		t.Errorf("options: %+v", o)
	}
	if o, _ := parseFlags([]string{"--managed-identity-namespaces="}, &bytes.Buffer{}); o.ManagedIdentityNamespaces == nil || len(o.ManagedIdentityNamespaces) != 0 {
		t.Errorf("an empty --managed-identity-namespaces = %#v, want an empty list (no namespace)", o.ManagedIdentityNamespaces)
	}
	if o, _ := parseFlags(nil, &bytes.Buffer{}); o.ManagedIdentityNamespaces != nil {
		t.Errorf("the default --managed-identity-namespaces = %#v, want nil (every namespace, as Azure's provider)", o.ManagedIdentityNamespaces)
	}
}

// TestUpstreamFlags: every flag of Azure's provider v1.8.2 (cmd/main.go, the --custom-user-agent
// of its pkg/version, and klog's), each set to a value, parses into the matching option.
func TestUpstreamFlags(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	o, err := parseFlags([]string{
		"--endpoint=unix:///provider/azure.sock", "--log-format-json=true", "--enable-pprof=true", "--pprof-port=6061",
		"--healthz-port=8990", "--healthz-path=/live", "--healthz-timeout=3s", "--metrics-backend=prometheus", "--prometheus-port=8899",
		"--construct-pem-chain=false", "--write-cert-and-key-in-separate-files=true", "--cloud-name=AzureUSGovernmentCloud",
		"--token-proxy-url=https://kubernetes.default.svc.cluster.local", "--sni-name=a0b1c2.ests.aks", "--custom-user-agent=team-a/1.0 (aks)",
		"-v=3", "--vmodule=server=4", "--logtostderr=true", "--alsologtostderr=false", "--log_dir=", "--log_file=", "--log_file_max_size=1800",
		"--skip_headers=false", "--skip_log_headers=false", "--stderrthreshold=2", "--add_dir_header=false", "--one_output=false",
		"--log_backtrace_at=", "--legacy_stderr_threshold_behavior=true",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		Endpoint: "unix:///provider/azure.sock", LogFormatJSON: true, LogVerbosity: 3, HealthzPort: 8990, HealthzPath: "/live",
		HealthzTimeout: 3 * time.Second, MetricsBackend: "prometheus", PrometheusPort: 8899, MetricsAddr: ":8899", EnablePprof: true,
		PprofPort: 6061, WriteCertAndKeyInSeparateFiles: true, CloudName: "AzureUSGovernmentCloud", CustomUserAgent: "team-a/1.0 (aks)",
		TokenProxyURL: "https://kubernetes.default.svc.cluster.local", SNIName: "a0b1c2.ests.aks",
		Parallelism: 16, ResultCacheTTL: 10 * time.Second, VaultRateLimit: 200, VaultBurst: 400, MaxResponseBytes: 4 << 20,
		MaxSelectedObjects: 100, MaxProcs: DefaultMaxProcs, MaxConcurrentMounts: 16,
	}
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	resetKlog(t)
}

func TestMetricsAddress(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ":8898"},
		{[]string{"--prometheus-port=9000"}, ":9000"},
		{[]string{"--prometheus-port=0"}, ""},
		{[]string{"--metrics-backend=PROMETHEUS", "--prometheus-port=9001"}, ":9001"},
	} {
		o, err := parseFlags(tc.args, &bytes.Buffer{})
		if err != nil || o.MetricsAddr != tc.want {
			t.Errorf("%q: metrics on %q (%v); want %q", tc.args, o.MetricsAddr, err, tc.want)
		}
	}
}

func TestHealthzBindFailureStopsStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	socket := filepath.Join(t.TempDir(), "azure.sock")
	err = run([]string{"--endpoint", "unix://" + socket, "--healthz-port", port, "--prometheus-port", "0"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "healthz listen") {
		t.Errorf("run with a taken healthz port: %v", err)
	}
}

func TestGracefulStopOnSIGTERM(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "azure.sock")
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--endpoint", "unix://" + socket, "--healthz-port", "0", "--prometheus-port", "0", "--enable-pprof", "--pprof-port", freePort(t, "127.0.0.1")}, &bytes.Buffer{})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop on SIGTERM")
	}
}

// resetKlog undoes what a test's flags did to klog's process-wide settings.
func resetKlog(t *testing.T) {
	t.Helper()
	klog.ClearLogger()
	if _, err := parseFlags([]string{"-v=0", "--vmodule="}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a TCP port that was free on host a moment ago.
func freePort(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
