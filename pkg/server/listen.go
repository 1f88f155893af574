package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// ParseEndpoint splits an endpoint such as unix:///tmp/azure.sock or tcp://127.0.0.1:9000.
func ParseEndpoint(endpoint string) (network, address string, err error) {
	for _, scheme := range []string{"unix", "tcp"} {
		if rest, ok := strings.CutPrefix(endpoint, scheme+"://"); ok && rest != "" {
			return scheme, rest, nil
		}
	}
	return "", "", fmt.Errorf("endpoint %q must be unix:///path/to/socket or tcp://host:port", endpoint)
}

// Listen opens the endpoint. A unix socket left by an earlier run is removed (but nothing that is
// not a socket), and the new socket is created owner-only.
func Listen(endpoint string) (net.Listener, error) {
	network, address, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		return net.Listen(network, address)
	}
	if fi, err := os.Lstat(address); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to remove it", address)
		}
		if err := os.Remove(address); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", address, err)
		}
	}
	return listenOwnerOnly(address)
}

// GRPC is the provider's gRPC server with its health service.
type GRPC struct {
	Server *grpc.Server
	Health *health.Server
}

// streamWorkers are goroutines kept to serve calls, so a Mount runs on a stack that has already
// grown to what a mount needs instead of growing a new goroutine's stack every time; calls
// beyond them get a goroutine of their own, as without workers.
const streamWorkers = 4

// receiveWindow is the HTTP/2 flow-control window granted to the driver for each call and for
// the connection. A fixed window turns off gRPC's bandwidth estimation, which sent a ping with
// every request and read its answer: three system calls and a wake-up of the reader per mount
// for nothing, as a MountRequest (a few KiB; this server takes at most gRPC's default 4 MiB)
// rarely needs more than the window.
const receiveWindow = 1 << 20

// NewGRPC registers the provider service and the health service.
func NewGRPC(svc v1alpha1.CSIDriverProviderServer) *GRPC {
	g := &GRPC{Server: grpc.NewServer(grpc.ChainUnaryInterceptor(RecoverPanics), grpc.NumStreamWorkers(streamWorkers),
		grpc.InitialWindowSize(receiveWindow), grpc.InitialConnWindowSize(receiveWindow)), Health: health.NewServer()}
	v1alpha1.RegisterCSIDriverProviderServer(g.Server, svc)
	healthpb.RegisterHealthServer(g.Server, g.Health)
	return g
}

// Healthz serves path on addr: 200 when the provider answers a gRPC health check on its socket
// within timeout, else 503. The listener is opened before it returns, so a bind error is reported.
func Healthz(addr, path, endpoint string, timeout time.Duration) (*http.Server, net.Listener, error) {
	network, address, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, nil, err
	}
	target := "unix://" + address
	if network == "tcp" {
		target = address
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("healthz client for %s: %w", endpoint, err)
	}
	client := healthpb.NewHealthClient(conn)
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			klog.V(2).InfoS("health check failed", "error", err)
			http.Error(w, "provider gRPC health check failed", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("healthz listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(func() { _ = conn.Close() })
	return srv, l, nil
}

// Serve runs srv on l until it is shut down; a shutdown is not an error.
func Serve(srv *http.Server, l net.Listener) error {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
