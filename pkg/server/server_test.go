package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/provider"
)

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][2]string{
		"unix:///tmp/azure.sock": {"unix", "/tmp/azure.sock"},
		"tcp://127.0.0.1:9000":   {"tcp", "127.0.0.1:9000"},
	} {
		n, a, err := ParseEndpoint(in)
		if err != nil || n != want[0] || a != want[1] {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v", in, n, a, err)
		}
	}
	for _, bad := range []string{"", "/tmp/azure.sock", "unix://", "http://x"} {
		if _, _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
		}
	}
}

func TestListenReplacesStaleSocketOwnerOnly(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "azure.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // leaves the socket file behind, as a crashed provider does

	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("socket mode %o: group or others can connect", perm)
	}
}

func TestListenKeepsNonSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "azure.sock")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Error("the regular file was removed")
	}
}

type stubMounter struct{ err error }

func (s stubMounter) Mount(context.Context, config.MountConfig) (provider.Result, error) {
	return provider.Result{Files: []provider.File{{Path: "a", Mode: 0o600, Contents: []byte("x")}}}, s.err
}

// serve runs the provider's gRPC server for m on a socket of its own until the test ends.
func serve(t *testing.T, m Mounter) (socket string, g *GRPC) {
	t.Helper()
	l, g := serveListener(t, m)
	return l.Addr().String(), g
}

// serveListener is serve, returning the listener.
func serveListener(t *testing.T, m Mounter) (net.Listener, *GRPC) {
	t.Helper()
	l, err := Listen("unix://" + filepath.Join(t.TempDir(), "azure.sock"))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPC(NewService(m, config.Defaults{}, nil), 0, nil)
	go func() { _ = g.Server.Serve(l) }()
	t.Cleanup(g.Server.Stop)
	return l, g
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	l, g := serveListener(t, stubMounter{})

	srv, hl, err := Healthz("127.0.0.1:0", "/healthz", l, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = Serve(srv, hl) }()
	defer srv.Close()
	get := func() int {
		resp, err := http.Get("http://" + hl.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Errorf("healthy provider: %d", code)
	}
	g.Health.Shutdown() // what happens on SIGTERM: NOT_SERVING
	if code := get(); code != http.StatusServiceUnavailable {
		t.Errorf("shutting-down provider: %d, want 503", code)
	}

	// A taken port is an error at start, not silence.
	if _, _, err := Healthz(hl.Addr().String(), "/healthz", l, time.Second); err == nil {
		t.Error("Healthz on a port in use succeeded")
	}
}

func TestMountStatusCodes(t *testing.T) {
	t.Parallel()
	validAttrs := `{"keyvaultName":"kv-demo","tenantId":"t","useVMManagedIdentity":"true","objects":"array:\n  - |\n    objectName: a\n    objectType: secret\n"}`
	kindErr := func(k keyvault.Kind) error {
		return &provider.MountError{Objects: []provider.ObjectError{{Object: config.Object{Name: "a", Type: config.TypeSecret}, Err: &keyvault.Error{Kind: k, Detail: "d"}}}}
	}
	tests := []struct {
		name  string
		attrs string
		err   error
		code  codes.Code
	}{
		{"ok", validAttrs, nil, codes.OK},
		{"bad parameters", `{"keyvaultName":"x"}`, nil, codes.InvalidArgument},
		{"unauthenticated", validAttrs, kindErr(keyvault.KindUnauthenticated), codes.Unauthenticated},
		{"denied", validAttrs, kindErr(keyvault.KindPermissionDenied), codes.PermissionDenied},
		{"not found", validAttrs, kindErr(keyvault.KindNotFound), codes.NotFound},
		{"throttled", validAttrs, kindErr(keyvault.KindUnavailable), codes.Unavailable},
		{"deadline", validAttrs, kindErr(keyvault.KindDeadlineExceeded), codes.DeadlineExceeded},
		{"unclassified", validAttrs, errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var observed codes.Code = 99
			svc := NewService(stubMounter{err: tt.err}, config.Defaults{}, func(c codes.Code, _ time.Duration) { observed = c })
			resp, err := svc.Mount(context.Background(), &v1alpha1.MountRequest{Attributes: tt.attrs, Permission: "420"})
			if got := status.Code(err); got != tt.code {
				t.Errorf("code = %s, want %s (%v)", got, tt.code, err)
			}
			if observed != tt.code {
				t.Errorf("observer saw %s", observed)
			}
			if tt.code == codes.OK && (len(resp.GetFiles()) != 1 || resp.GetFiles()[0].GetMode() != 0o600) {
				t.Errorf("files = %v", resp.GetFiles())
			}
			if tt.code != codes.OK && resp != nil {
				t.Errorf("a failed mount returned a response: %v", resp)
			}
		})
	}
}
