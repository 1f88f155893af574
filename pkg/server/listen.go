package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// ParseEndpoint splits an endpoint such as unix:///tmp/azure.sock or tcp://127.0.0.1:9000. A tcp
// endpoint must be on a loopback address: the socket carries mounts with the node's identities
// and has no authentication.
func ParseEndpoint(endpoint string) (network, address string, err error) {
	for _, scheme := range []string{"unix", "tcp"} {
		rest, ok := strings.CutPrefix(endpoint, scheme+"://")
		if !ok || rest == "" {
			continue
		}
		if scheme == "tcp" {
			if err := loopbackOnly(rest); err != nil {
				return "", "", fmt.Errorf("endpoint %q: %w", endpoint, err)
			}
		}
		return scheme, rest, nil
	}
	return "", "", fmt.Errorf("endpoint %q must be unix:///path/to/socket or tcp://host:port", endpoint)
}

// loopbackOnly accepts host:port whose host is localhost or an address in 127.0.0.0/8 or ::1.
func loopbackOnly(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("tcp endpoint must be host:port: %w", err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	what := "address " + host
	if host == "" {
		what = "every interface"
	}
	return fmt.Errorf("tcp on %s is refused: only a loopback address (127.0.0.0/8, ::1, localhost) is allowed, "+
		"because the socket carries mounts made with the node's identities and has no authentication; use unix:///path/to/socket", what)
}

// probeTimeout bounds the dial that tells a live socket from a stale one.
const probeTimeout = time.Second

// Listen opens the endpoint. For a unix endpoint it returns a *Socket: a socket already at the
// path is dialled first, and only one that refuses the connection (left by a provider that
// died) is removed; one that accepts it belongs to a running provider and Listen fails. Nothing
// that is not a socket is removed. The new socket is created owner-only, and its Close removes
// the path only while it is still this socket.
func Listen(endpoint string) (net.Listener, error) {
	network, address, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		return net.Listen(network, address)
	}
	if err := removeStale(address); err != nil {
		return nil, err
	}
	l, err := listenOwnerOnly(address)
	if err != nil {
		return nil, err
	}
	// Go's own unlink on Close removes whatever is at the path then, even another provider's
	// socket; Socket.Close checks first.
	l.SetUnlinkOnClose(false)
	id, err := identify(address)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("stat the new socket %s: %w", address, err)
	}
	return &Socket{UnixListener: l, path: address, id: id}, nil
}

// removeStale removes a socket at address that no process accepts connections on. It fails for
// a live socket, for anything that is not a socket, and when it cannot tell.
func removeStale(address string) error {
	for range 3 {
		fi, err := identify(address)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", address, err)
		}
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s exists and is not a socket: refusing to remove it", address)
		}
		conn, err := net.DialTimeout("unix", address, probeTimeout)
		if err == nil {
			_ = conn.Close()
			return fmt.Errorf("%s: another provider is serving on this socket (it accepted a connection): refusing to replace it; "+
				"stop that provider first, or start this one with another --endpoint", address)
		}
		if !connectionRefused(err) {
			return fmt.Errorf("%s: cannot tell whether another provider is serving on this socket (%w): refusing to remove it; "+
				"stop that provider or remove the socket yourself, or start this one with another --endpoint", address, err)
		}
		// Stale. Remove it only if it is still the socket that refused: one created meanwhile
		// is checked afresh.
		now, err := os.Lstat(address)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", address, err)
		}
		if !os.SameFile(fi, now) {
			continue
		}
		if err := os.Remove(address); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale socket %s: %w", address, err)
		}
		klog.InfoS("removed a stale socket: nothing accepted a connection on it", "path", address)
		return nil
	}
	return fmt.Errorf("%s keeps being replaced while this provider starts: is another provider starting on it? "+
		"Use another --endpoint for one of them", address)
}

// identify stats path without following a link and fixes the file's identity (device and
// inode; volume and file index on Windows, which reads them lazily) at that moment.
func identify(path string) (os.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	_ = os.SameFile(fi, fi)
	return fi, nil
}

// Socket is the listener Listen returns for a unix endpoint. It remembers the identity of the
// socket file it created, so it never removes (on Close) nor answers /healthz for a socket that
// another process put at its path since.
type Socket struct {
	*net.UnixListener
	path  string
	id    os.FileInfo
	close sync.Once
}

// Path is the socket's path.
func (s *Socket) Path() string { return s.path }

// Owned returns nil while the path is still the socket this listener created, else why not.
func (s *Socket) Owned() error {
	now, err := os.Lstat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("socket %s was removed: the driver cannot reach this provider", s.path)
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", s.path, err)
	}
	if !os.SameFile(s.id, now) {
		return fmt.Errorf("socket %s is no longer the one this provider created (another process replaced it): the driver reaches that process, not this provider", s.path)
	}
	return nil
}

// Close stops listening and removes the path if it is still this listener's socket; another
// process's socket at the path is left alone.
func (s *Socket) Close() error {
	s.close.Do(func() {
		// Removed while still listening: a provider starting meanwhile finds it live and does not
		// replace it, so what is removed is this socket.
		if err := s.Owned(); err != nil {
			klog.InfoS("leaving the socket path alone", "reason", err.Error())
			return
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			klog.ErrorS(err, "remove socket", "path", s.path)
		}
	})
	return s.UnixListener.Close()
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

// MaxRequestBytes bounds a MountRequest: the attributes (config.MaxAttributesBytes), the
// nodePublishSecretRef secret, the versions already written and the rest, with room to spare.
// gRPC refuses a larger one with ResourceExhausted before the provider reads it (its default is
// 4 MiB, which each of the calls in flight could hold).
const MaxRequestBytes = 2 << 20

// NewGRPC registers the provider service and the health service. maxStreams bounds the calls in
// flight on one connection (0: gRPC's default, no bound): a call is in flight until its whole
// response has been written to the driver, so this also bounds the encoded responses waiting for
// a slow reader, which the provider's own bound on concurrent mounts (released when a mount
// returns its files) cannot see. observe, if not nil, sees every unary call (ObserveCalls).
func NewGRPC(svc v1alpha1.CSIDriverProviderServer, maxStreams uint32, observe CallObserver) *GRPC {
	interceptors := []grpc.UnaryServerInterceptor{RecoverPanics}
	if observe != nil {
		interceptors = append([]grpc.UnaryServerInterceptor{ObserveCalls(observe)}, interceptors...) // outermost: sees a recovered panic's Internal
	}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(interceptors...), grpc.NumStreamWorkers(streamWorkers),
		grpc.InitialWindowSize(receiveWindow), grpc.InitialConnWindowSize(receiveWindow), grpc.MaxRecvMsgSize(MaxRequestBytes)}
	if maxStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(maxStreams))
	}
	g := &GRPC{Server: grpc.NewServer(opts...), Health: health.NewServer()}
	v1alpha1.RegisterCSIDriverProviderServer(g.Server, svc)
	healthpb.RegisterHealthServer(g.Server, g.Health)
	return g
}

// Healthz serves path on addr for the provider listening on l: 200 when l's socket is still the
// one it created (for a *Socket from Listen) and the provider answers a gRPC health check through
// l's address within timeout, else 503 with the reason. The listener is opened before it
// returns, so a bind error is reported.
func Healthz(addr, path string, l net.Listener, timeout time.Duration) (*http.Server, net.Listener, error) {
	network, address := l.Addr().Network(), l.Addr().String()
	conn, err := grpc.NewClient("passthrough:///localhost", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, address)
		}))
	if err != nil {
		return nil, nil, fmt.Errorf("healthz client for %s: %w", address, err)
	}
	client := healthpb.NewHealthClient(conn)
	owned := func() error { return nil }
	if s, ok := l.(interface{ Owned() error }); ok {
		owned = s.Owned
	}
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if err := owned(); err != nil {
			klog.ErrorS(nil, "health check failed", "reason", err.Error())
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
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
	hl, err := net.Listen("tcp", addr)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("healthz listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(func() { _ = conn.Close() })
	return srv, hl, nil
}

// Serve runs srv on l until it is shut down; a shutdown is not an error.
func Serve(srv *http.Server, l net.Listener) error {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
