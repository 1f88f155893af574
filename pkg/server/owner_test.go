package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/akv-csi/provider/pkg/config"
)

// otherSocket puts a socket of "another process" at path, serving the gRPC health service as
// SERVING (so a check that only dials the path is satisfied by it), until the test ends. It does
// not remove the path when closed.
func otherSocket(t *testing.T, path string) os.FileInfo {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// sameAs fails the test unless path is still the file want.
func sameAs(t *testing.T, path string, want os.FileInfo, what string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !os.SameFile(fi, want) {
		t.Fatalf("%s: %s is another file now", what, path)
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "azure.sock")
	first, err := Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	before, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}

	second, err := Listen("unix://" + path)
	if err == nil {
		second.Close()
		t.Fatal("a second Listen on a live socket succeeded")
	}
	for _, want := range []string{path, "another provider is serving", "--endpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	sameAs(t, path, before, "after the refused Listen")
	if err := first.(*Socket).Owned(); err != nil {
		t.Errorf("the first listener no longer owns its socket: %v", err)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("the first provider's socket no longer accepts: %v", err)
	}
	_ = c.Close()
}

func TestListenReplacesOnlyAStaleSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "azure.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // the file stays and refuses connections, as after a SIGKILL
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		t.Fatal("the stale socket accepts")
	}

	// The inode of the stale socket is free and may be the new one's: that the path accepts
	// connections tells them apart.
	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("the stale socket was kept: %v", err)
	}
	_ = c.Close()
	if err := l.(*Socket).Owned(); err != nil {
		t.Errorf("the new socket is not owned: %v", err)
	}
}

func TestCloseRemovesOnlyItsOwnSocket(t *testing.T) {
	t.Parallel()
	t.Run("own", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "azure.sock")
		l, err := Listen("unix://" + path)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("its own socket is still there after Close: %v", err)
		}
		_ = l.Close() // a second Close (gRPC's Stop after run's) removes nothing more
	})
	t.Run("replaced", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "azure.sock")
		l, err := Listen("unix://" + path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		other := otherSocket(t, path)
		if err := l.(*Socket).Owned(); err == nil || !strings.Contains(err.Error(), "no longer") {
			t.Errorf("Owned on a replaced path: %v", err)
		}
		_ = l.Close()
		sameAs(t, path, other, "after the replaced listener's Close")
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			t.Fatalf("the other socket no longer accepts: %v", err)
		}
		_ = c.Close()
	})
	t.Run("through gRPC's Stop", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "azure.sock")
		l, err := Listen("unix://" + path)
		if err != nil {
			t.Fatal(err)
		}
		g := NewGRPC(NewService(stubMounter{}, config.Defaults{}, nil), 0, nil)
		served := make(chan struct{})
		go func() { _ = g.Server.Serve(l); close(served) }()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		other := otherSocket(t, path)
		g.Server.GracefulStop() // what run does on SIGTERM
		<-served
		sameAs(t, path, other, "after GracefulStop of the replaced provider")
	})
}

func TestHealthzAnswersOnlyForItsOwnSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "azure.sock")
	get := serveWithHealthz(t, "unix://"+path)
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("own socket: %d %s", code, body)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "was removed") {
		t.Errorf("socket removed: %d %q, want 503 saying it was removed", code, body)
	}

	otherSocket(t, path) // serves the health service as SERVING: only the identity tells it apart
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "no longer the one this provider created") {
		t.Errorf("socket replaced by another process's: %d %q, want 503 saying so", code, body)
	}
}

func TestHealthzOnLoopbackTCP(t *testing.T) {
	t.Parallel()
	if code, body := serveWithHealthz(t, "tcp://127.0.0.1:0")(); code != http.StatusOK {
		t.Errorf("tcp provider: %d %s", code, body)
	}
}

// serveWithHealthz serves a provider on endpoint with /healthz on loopback, and returns a GET of
// /healthz (status and body).
func serveWithHealthz(t *testing.T, endpoint string) func() (int, string) {
	t.Helper()
	l, err := Listen(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPC(NewService(stubMounter{}, config.Defaults{}, nil), 0, nil)
	go func() { _ = g.Server.Serve(l) }()
	t.Cleanup(g.Server.Stop)
	srv, hl, err := Healthz("127.0.0.1:0", "/healthz", l, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = Serve(srv, hl) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + hl.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
}

func TestParseEndpointTCPLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"tcp://127.0.0.1:9000", "tcp://127.1.2.3:9000", "tcp://[::1]:9000", "tcp://localhost:9000", "tcp://LOCALHOST:9000"} {
		if _, _, err := ParseEndpoint(ok); err != nil {
			t.Errorf("ParseEndpoint(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"tcp://0.0.0.0:9000", "tcp://:9000", "tcp://[::]:9000", "tcp://10.0.0.4:9000", "tcp://[fe80::1]:9000",
		"tcp://node.example:9000", "tcp://localhost.example:9000", "tcp://127.0.0.1"} {
		_, _, err := ParseEndpoint(bad)
		if err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
			continue
		}
		if strings.HasSuffix(bad, ":9000") && (!strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), "no authentication")) {
			t.Errorf("ParseEndpoint(%q): %v; want the reason (loopback only, no authentication)", bad, err)
		}
	}
	if _, err := Listen("tcp://0.0.0.0:0"); err == nil {
		t.Error("Listen on every interface succeeded")
	}
}
