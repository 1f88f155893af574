// Command provider is the Azure Key Vault provider for the Secrets Store CSI Driver: a gRPC server
// on a unix socket that the driver calls to mount secrets, keys and certificates.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/akv-csi/provider/pkg/auth"
	azcloud "github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/metrics"
	"github.com/akv-csi/provider/pkg/provider"
	"github.com/akv-csi/provider/pkg/server"
	"github.com/akv-csi/provider/pkg/version"
)

// Options are the daemon's flags. Every flag of Azure's provider (v1.8.2) is accepted with its
// meaning and default; Parallelism and the fields after it are this provider's own.
type Options struct {
	Endpoint       string
	LogFormatJSON  bool
	LogVerbosity   int // klog's -v, read back after parsing
	Version        bool
	HealthzPort    int
	HealthzPath    string
	HealthzTimeout time.Duration
	MetricsBackend string
	PrometheusPort int
	// MetricsAddr is where /metrics listens, ":<--prometheus-port>"; empty when metrics are off.
	MetricsAddr                    string
	EnablePprof                    bool
	PprofPort                      int
	ConstructPEMChain              bool
	WriteCertAndKeyInSeparateFiles bool
	CloudName                      string
	CloudEnvFile                   string // from AZURE_ENVIRONMENT_FILEPATH
	// CustomUserAgent is appended to the User-Agent of every Key Vault and Entra ID request.
	CustomUserAgent string
	// TokenProxyURL and SNIName are consumed by the identity-binding mode (useAzureTokenProxy):
	// the token proxy's https URL and the TLS server name to present to it. Empty means the
	// in-cluster API server and a name computed from its certificate, as in Azure's provider.
	TokenProxyURL  string
	SNIName        string
	Parallelism    int
	ResultCacheTTL time.Duration
	VaultRateLimit float64
	VaultBurst     int
	// MaxResponseBytes bounds a MountResponse (--max-response-bytes).
	MaxResponseBytes int
	// MaxSelectedObjects bounds the matches of one selection (--max-selected-objects).
	MaxSelectedObjects int
	// MaxProcs is the GOMAXPROCS to set (--max-procs); 0 leaves Go's own choice.
	MaxProcs int
	// MaxConcurrentMounts bounds the mounts served at once (--max-concurrent-mounts).
	MaxConcurrentMounts int
	// ManagedIdentityNamespaces lists the namespaces that may use the node's managed identities
	// (--managed-identity-namespaces); nil: every namespace.
	ManagedIdentityNamespaces []string
	// AllowManagedIdentitySelections lets selections list a vault with the node's managed identity.
	AllowManagedIdentitySelections bool
	// HealthzBindAddress and MetricsBindAddress are the hosts /healthz and /metrics listen on
	// ("" every address).
	HealthzBindAddress, MetricsBindAddress string
}

// DefaultMaxProcs is --max-procs' default. The provider waits on Key Vault almost all the time,
// and each read hands off between goroutines (the caller, net/http's reader and writer). With a
// second processor idle, every hand-off wakes it to look for work and put it back to sleep: in a
// warm bench of one mount of 10 objects at a time that was 18-20% of the provider's CPU, and
// nothing got faster with two (make bench: same latency and mounts/s at 1 and 64 mounts at
// once). One processor serves about 4,000 warm reads/s, 20 times the default per-vault limit
// (--vault-rate-limit 200); a node reading from many vaults, or many cold mounts at once (TLS
// handshakes: 64 cold mounts took ~10% longer), may want more.
const DefaultMaxProcs = 1

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		klog.ErrorS(err, "provider stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("provider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	klog.InitFlags(fs)
	var o Options
	fs.StringVar(&o.Endpoint, "endpoint", "unix:///tmp/azure.sock", "gRPC endpoint the driver connects to (unix:///path or tcp://host:port)")
	fs.BoolVar(&o.LogFormatJSON, "log-format-json", false, "write logs as JSON, one object per line (honours -v)")
	fs.BoolVar(&o.Version, "version", false, "print the build information as JSON and exit")
	fs.IntVar(&o.HealthzPort, "healthz-port", 8989, "port of the /healthz endpoint (0 disables it)")
	fs.StringVar(&o.HealthzPath, "healthz-path", "/healthz", "path of the health endpoint")
	fs.DurationVar(&o.HealthzTimeout, "healthz-timeout", 5*time.Second, "timeout of the gRPC health check behind /healthz")
	fs.StringVar(&o.MetricsBackend, "metrics-backend", "Prometheus", "metrics backend: Prometheus (any case) is the only one")
	fs.IntVar(&o.PrometheusPort, "prometheus-port", 8898, "port of the Prometheus /metrics endpoint, on all interfaces (0 disables it)")
	fs.BoolVar(&o.EnablePprof, "enable-pprof", false, "serve net/http/pprof on 127.0.0.1:<--pprof-port> (loopback only)")
	fs.IntVar(&o.PprofPort, "pprof-port", 6060, "port of the pprof endpoint on 127.0.0.1, with --enable-pprof")
	fs.BoolVar(&o.ConstructPEMChain, "construct-pem-chain", true, "order a certificate's PEM chain leaf, intermediates, root")
	fs.BoolVar(&o.WriteCertAndKeyInSeparateFiles, "write-cert-and-key-in-separate-files", false,
		"also write <file>.crt and <file>.key for a certificate's secret in PEM")
	fs.StringVar(&o.CloudName, "cloud-name", config.AzurePublicCloud, "default cloud when a SecretProviderClass sets no cloudName")
	fs.StringVar(&o.CustomUserAgent, "custom-user-agent", "", "appended to the User-Agent of every Key Vault and Entra ID request")
	fs.StringVar(&o.TokenProxyURL, "token-proxy-url", "",
		"identity binding (useAzureTokenProxy): https URL of the token proxy (default: the in-cluster API server)")
	fs.StringVar(&o.SNIName, "sni-name", "",
		"identity binding (useAzureTokenProxy): TLS server name for the token proxy (default: computed from the API server's certificate)")
	fs.IntVar(&o.Parallelism, "parallel-fetches", provider.DefaultParallelism,
		"Key Vault reads run at once within one mount (a mount of up to this many objects takes one round trip)")
	fs.DurationVar(&o.ResultCacheTTL, "result-cache-ttl", 10*time.Second,
		"keep each identity's successful reads this long so replicas mounting together share one read (0 disables; at most 30s)")
	fs.Float64Var(&o.VaultRateLimit, "vault-rate-limit", 200, "most Key Vault reads per second to one vault, across all mounts")
	fs.IntVar(&o.VaultBurst, "vault-burst", 400, "reads to one vault allowed at once above the rate limit")
	fs.IntVar(&o.MaxSelectedObjects, "max-selected-objects", provider.DefaultMaxSelectedObjects,
		"most objects one objectNamePrefix/objectTags selection may match (past it the mount fails)")
	fs.IntVar(&o.MaxResponseBytes, "max-response-bytes", server.DefaultMaxResponseBytes,
		"largest MountResponse sent to the driver (keep it at most the driver's --max-call-recv-msg-size)")
	fs.IntVar(&o.MaxConcurrentMounts, "max-concurrent-mounts", provider.DefaultMaxConcurrentMounts,
		"mounts served at once; the others wait for a turn within the driver's deadline (bounds the provider's memory: see the README's Memory section)")
	miNamespaces := fs.String("managed-identity-namespaces", "*",
		"comma-separated namespaces whose pods may mount with the node's managed identities (useVMManagedIdentity); * every namespace (as Azure's provider), empty none")
	fs.BoolVar(&o.AllowManagedIdentitySelections, "allow-managed-identity-selections", false,
		"let objectNamePrefix/objectTags selections list a vault with the node's managed identity (off: they name objects)")
	fs.StringVar(&o.HealthzBindAddress, "healthz-bind-address", "", "address /healthz listens on, such as 127.0.0.1 (empty: every address of the pod or, with host networking, of the node)")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", "", "address /metrics listens on (empty: every address of the pod or, with host networking, of the node)")
	fs.IntVar(&o.MaxProcs, "max-procs", DefaultMaxProcs,
		"GOMAXPROCS: goroutines running at once (0 keeps Go's choice: the GOMAXPROCS variable, else the CPUs or the cgroup's CPU limit)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	// A GOMAXPROCS variable the operator set wins over the default, not over the flag.
	if os.Getenv("GOMAXPROCS") != "" && !flagSet(fs, "max-procs") {
		o.MaxProcs = 0
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	if v, err := strconv.Atoi(fs.Lookup("v").Value.String()); err == nil {
		o.LogVerbosity = v
	} else {
		errs = append(errs, fmt.Errorf("-v: %w", err))
	}
	if _, _, err := server.ParseEndpoint(o.Endpoint); err != nil {
		errs = append(errs, err)
	}
	if o.HealthzPort < 0 || o.HealthzPort > 65535 {
		errs = append(errs, fmt.Errorf("--healthz-port %d is not a port (0 disables /healthz)", o.HealthzPort))
	}
	if o.HealthzTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--healthz-timeout must be positive"))
	}
	if !strings.EqualFold(o.MetricsBackend, "prometheus") {
		errs = append(errs, fmt.Errorf("--metrics-backend %q is not supported: Prometheus is the only backend (OTLP is not implemented)", o.MetricsBackend))
	}
	if o.PrometheusPort < 0 || o.PrometheusPort > 65535 {
		errs = append(errs, fmt.Errorf("--prometheus-port %d is not a port (0 disables /metrics)", o.PrometheusPort))
	}
	for _, a := range []struct{ flag, addr string }{{"--healthz-bind-address", o.HealthzBindAddress}, {"--metrics-bind-address", o.MetricsBindAddress}} {
		if a.addr != "" && net.ParseIP(a.addr) == nil && a.addr != "localhost" {
			errs = append(errs, fmt.Errorf("%s %q is not an IP address (or localhost)", a.flag, a.addr))
		}
	}
	if o.PrometheusPort > 0 {
		o.MetricsAddr = net.JoinHostPort(o.MetricsBindAddress, strconv.Itoa(o.PrometheusPort))
	}
	if *miNamespaces != "*" {
		o.ManagedIdentityNamespaces = []string{}
		for _, ns := range strings.Split(*miNamespaces, ",") {
			if ns = strings.TrimSpace(ns); ns == "*" {
				errs = append(errs, fmt.Errorf("--managed-identity-namespaces: * allows every namespace and cannot be combined with names"))
			} else if ns != "" {
				o.ManagedIdentityNamespaces = append(o.ManagedIdentityNamespaces, ns)
			}
		}
	}
	if o.MaxConcurrentMounts < 1 {
		errs = append(errs, fmt.Errorf("--max-concurrent-mounts must be at least 1"))
	}
	if o.MaxResponseBytes < 1024 {
		errs = append(errs, fmt.Errorf("--max-response-bytes %d is below 1024", o.MaxResponseBytes))
	}
	if o.PprofPort < 1 || o.PprofPort > 65535 {
		errs = append(errs, fmt.Errorf("--pprof-port %d is not a port (1-65535)", o.PprofPort))
	}
	if cloud, err := config.ParseCloudName(o.CloudName); err != nil {
		errs = append(errs, fmt.Errorf("--cloud-name %w", err))
	} else {
		o.CloudName = cloud
	}
	// As Azure's provider (go-autorest): the Azure Stack environment file comes from the
	// environment, is required at start for --cloud-name AzureStackCloud, and serves every mount
	// that names that cloud without cloudEnvFileName. Each mount reads it again.
	o.CloudEnvFile = strings.TrimSpace(os.Getenv(config.AzureEnvironmentFileVar))
	if o.CloudName == config.AzureStackCloud {
		if o.CloudEnvFile == "" {
			errs = append(errs, fmt.Errorf("--cloud-name %s needs the environment variable %s: the path of the Azure environment JSON file on the node",
				config.AzureStackCloud, config.AzureEnvironmentFileVar))
		} else if _, err := azcloud.Resolve(config.AzureStackCloud, o.CloudEnvFile); err != nil {
			errs = append(errs, fmt.Errorf("--cloud-name %s with %s: %w", config.AzureStackCloud, config.AzureEnvironmentFileVar, err))
		}
	}
	if err := validateUserAgent(o.CustomUserAgent); err != nil {
		errs = append(errs, err)
	}
	if o.TokenProxyURL != "" {
		if err := validateTokenProxyURL(o.TokenProxyURL); err != nil {
			errs = append(errs, err)
		}
	}
	if o.SNIName != "" {
		if err := validateSNIName(o.SNIName); err != nil {
			errs = append(errs, err)
		}
	}
	if o.MaxProcs < 0 {
		errs = append(errs, fmt.Errorf("--max-procs must be 0 (Go's choice) or more"))
	}
	if o.Parallelism < 1 {
		errs = append(errs, fmt.Errorf("--parallel-fetches must be at least 1"))
	}
	if o.MaxSelectedObjects < 1 || o.MaxSelectedObjects > config.MaxFiles {
		errs = append(errs, fmt.Errorf("--max-selected-objects must be between 1 and %d (the most files of one mount)", config.MaxFiles))
	}
	if o.ResultCacheTTL < 0 || o.ResultCacheTTL > 30*time.Second {
		errs = append(errs, fmt.Errorf("--result-cache-ttl must be between 0 and 30s (a quarter of the driver's default 2m rotation poll)"))
	}
	if o.VaultRateLimit <= 0 || o.VaultBurst < 1 {
		errs = append(errs, fmt.Errorf("--vault-rate-limit must be positive and --vault-burst at least 1"))
	}
	return o, errors.Join(errs...)
}

// memoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT, which the chart sets from the
// container's memory limit), or "none".
func memoryLimit() string {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return strconv.FormatInt(l>>20, 10) + "MiB"
	}
	return "none"
}

// flagSet reports whether name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func run(args []string, stdout io.Writer) error {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.Version {
		_, err := fmt.Fprintln(stdout, version.JSON())
		return err
	}
	setupLogging(o, os.Stderr)
	if o.MaxProcs > 0 {
		runtime.GOMAXPROCS(o.MaxProcs)
	}
	klog.InfoS("starting Azure Key Vault provider", "version", version.BuildVersion, "commit", version.GitCommit,
		"endpoint", o.Endpoint, "gomaxprocs", runtime.GOMAXPROCS(0), "memoryLimit", memoryLimit(), "constructPEMChain", o.ConstructPEMChain, "writeCertAndKeyInSeparateFiles", o.WriteCertAndKeyInSeparateFiles)

	// Installed before the socket exists, so a stop request is never missed.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	var perCall []policy.Policy
	if o.CustomUserAgent != "" {
		perCall = append(perCall, userAgentPolicy{suffix: o.CustomUserAgent})
	}
	p := provider.New(provider.Options{
		ConstructPEMChain:              o.ConstructPEMChain,
		WriteCertAndKeyInSeparateFiles: o.WriteCertAndKeyInSeparateFiles,
		Parallelism:                    o.Parallelism,
		MaxSelectedObjects:             o.MaxSelectedObjects,
		MaxConcurrentMounts:            o.MaxConcurrentMounts,
		MaxMountBytes:                  o.MaxResponseBytes,
		ManagedIdentity:                provider.ManagedIdentityPolicy{Namespaces: o.ManagedIdentityNamespaces, AllowSelections: o.AllowManagedIdentitySelections},
		Auth: auth.Options{ApplicationID: "akv-csi-provider", PerCallPolicies: perCall,
			TokenProxyURL: o.TokenProxyURL, TokenProxySNI: o.SNIName},
		KeyVault: keyvault.Options{ApplicationID: "akv-csi-provider", PerCallPolicies: perCall},
		Sharing:  provider.SharingOptions{ResultTTL: o.ResultCacheTTL, VaultRateLimit: o.VaultRateLimit, VaultBurst: o.VaultBurst},
		Metrics:  m,
	})
	svc := server.NewService(p, config.Defaults{CloudName: o.CloudName, CloudEnvFile: o.CloudEnvFile}, func(c codes.Code, d time.Duration) {
		m.ObserveMount(c.String(), d)
	})
	svc.MaxResponseBytes = o.MaxResponseBytes

	listener, err := server.Listen(o.Endpoint)
	if err != nil {
		return err
	}
	g := server.NewGRPC(svc, uint32(o.MaxConcurrentMounts), func(method string, c codes.Code, d time.Duration) { //nolint:gosec // validated: 1 or more
		m.ObserveGRPCRequest(method, c.String(), d)
	})

	var httpServers []*http.Server
	var httpListeners []net.Listener
	fail := func(err error) error {
		_ = listener.Close()
		for _, l := range httpListeners {
			_ = l.Close()
		}
		return err
	}
	if o.HealthzPort > 0 {
		srv, l, err := server.Healthz(net.JoinHostPort(o.HealthzBindAddress, strconv.Itoa(o.HealthzPort)), o.HealthzPath, listener, o.HealthzTimeout)
		if err != nil {
			return fail(err)
		}
		httpServers, httpListeners = append(httpServers, srv), append(httpListeners, l)
	}
	if o.MetricsAddr != "" {
		l, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return fail(fmt.Errorf("metrics listen on %s: %w", o.MetricsAddr, err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		httpServers = append(httpServers, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second})
		httpListeners = append(httpListeners, l)
	}
	pprofAddr := ""
	if o.EnablePprof {
		srv, l, err := pprofServer(o.PprofPort)
		if err != nil {
			return fail(err)
		}
		httpServers, httpListeners = append(httpServers, srv), append(httpListeners, l)
		pprofAddr = l.Addr().String()
	}

	errc := make(chan error, 1+len(httpServers))
	go func() { errc <- g.Server.Serve(listener) }()
	for i := range httpServers {
		go func() { errc <- server.Serve(httpServers[i], httpListeners[i]) }()
	}
	klog.InfoS("listening", "endpoint", o.Endpoint, "healthzPort", o.HealthzPort, "metricsAddr", o.MetricsAddr, "pprofAddr", pprofAddr)

	select {
	case s := <-sig:
		klog.InfoS("stopping", "signal", s.String())
		err = nil
	case err = <-errc:
	}
	g.Health.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range httpServers {
		_ = srv.Shutdown(ctx)
	}
	stopped := make(chan struct{})
	go func() { g.Server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		g.Server.Stop()
	}
	return err
}
