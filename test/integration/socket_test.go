package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/server"
)

// socketProc is one provider process started on a socket path.
type socketProc struct {
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // cmd.Wait's, once done is closed
}

// startSocketProc starts the provider binary bin on socket, with /healthz on healthzPort ("0":
// none), and stops it (SIGKILL) at the end of the test if it still runs.
func startSocketProc(t *testing.T, name, bin, socket, healthzPort string) *socketProc {
	t.Helper()
	p := &socketProc{name: name, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "--endpoint=unix://"+socket, "--healthz-port="+healthzPort, "--prometheus-port=0")
	// Its log goes to the leak scan of TestMain as well.
	p.cmd.Stderr = io.MultiWriter(p.stderr, &logs)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	return p
}

// waitListening waits until the provider logged that it serves.
func (p *socketProc) waitListening(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.stderr.String(), `"listening"`) {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("provider %s exited (%v) before listening:\n%s", p.name, p.err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider %s did not listen within 10s:\n%s", p.name, p.stderr)
		}
	}
}

// waitExit waits for the provider to exit and returns its exit code.
func (p *socketProc) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("provider %s did not exit within 15s:\n%s", p.name, p.stderr)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("provider %s: %v", p.name, p.err)
	}
	return 0
}

func (p *socketProc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wantServing checks that a provider answers a gRPC health check, Version and Mount (of invalid
// parameters: InvalidArgument) on socket.
func wantServing(t *testing.T, socket, when string) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///localhost", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("%s: health check on %s: %v %v", when, socket, h, err)
	}
	v, err := v1alpha1.NewCSIDriverProviderClient(conn).Version(ctx, &v1alpha1.VersionRequest{Version: "v1alpha1"})
	if err != nil || v.GetRuntimeName() != server.RuntimeName {
		t.Fatalf("%s: Version on %s: %v %v", when, socket, v, err)
	}
	_, err = v1alpha1.NewCSIDriverProviderClient(conn).Mount(ctx, &v1alpha1.MountRequest{Attributes: `{"keyvaultName":"x"}`, Secrets: "{}",
		Permission: "420", TargetPath: t.TempDir()})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%s: Mount of invalid parameters on %s: %v, want InvalidArgument", when, socket, err)
	}
}

// socketFile returns the file at socket now.
func socketFile(t *testing.T, socket, when string) os.FileInfo {
	t.Helper()
	fi, err := os.Lstat(socket)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s: %s is not a socket", when, socket)
	}
	return fi
}

// healthz GETs a provider's /healthz.
func healthz(t *testing.T, port string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestSocketOwnership runs two provider binaries on one socket path, as a DaemonSet upgrade with
// maxSurge does: the second never takes a live socket, takes a stale one, and whichever exits
// never removes the other's.
func TestSocketOwnership(t *testing.T) {
	bin := providerBinary(t)

	t.Run("a live socket is not taken", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "azure.sock")
		a := startSocketProc(t, "A", bin, socket, "0")
		a.waitListening(t)
		before := socketFile(t, socket, "A started")

		b := startSocketProc(t, "B", bin, socket, "0")
		if code := b.waitExit(t); code == 0 {
			t.Errorf("B on A's live socket exited 0; want non-zero:\n%s", b.stderr)
		}
		for _, want := range []string{socket, "another provider is serving on this socket", "--endpoint"} {
			if !strings.Contains(b.stderr.String(), want) {
				t.Errorf("B's error does not say %q:\n%s", want, b.stderr)
			}
		}
		if !os.SameFile(before, socketFile(t, socket, "after B exited")) {
			t.Fatal("B replaced A's live socket")
		}
		wantServing(t, socket, "A after B exited")

		a.signal(t, syscall.SIGTERM)
		if code := a.waitExit(t); code != 0 {
			t.Errorf("A exited %d on SIGTERM:\n%s", code, a.stderr)
		}
		if _, err := os.Lstat(socket); !os.IsNotExist(err) {
			t.Errorf("A's own socket is still there after its SIGTERM: %v", err)
		}
	})

	t.Run("a stale socket is taken", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "azure.sock")
		a := startSocketProc(t, "A", bin, socket, "0")
		a.waitListening(t)
		a.signal(t, syscall.SIGKILL)
		a.waitExit(t)
		socketFile(t, socket, "after A's SIGKILL") // a SIGKILL leaves the file, which refuses connections

		b := startSocketProc(t, "B", bin, socket, "0")
		b.waitListening(t)
		wantServing(t, socket, "B after A's SIGKILL")
	})

	t.Run("whichever exits never removes the other's", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "azure.sock")
		port := freeLoopbackPort(t)
		a := startSocketProc(t, "A", bin, socket, port)
		a.waitListening(t)
		if code, body := healthz(t, port); code != http.StatusOK {
			t.Fatalf("A's /healthz on its own socket: %d %s", code, body)
		}

		// Someone removes A's socket and B starts on the path.
		if err := os.Remove(socket); err != nil {
			t.Fatal(err)
		}
		if code, body := healthz(t, port); code != http.StatusServiceUnavailable || !strings.Contains(body, "was removed") {
			t.Errorf("A's /healthz with its socket removed: %d %q; want 503 saying it was removed", code, body)
		}
		b := startSocketProc(t, "B", bin, socket, "0")
		b.waitListening(t)
		bFile := socketFile(t, socket, "B started")
		if code, body := healthz(t, port); code != http.StatusServiceUnavailable || !strings.Contains(body, "no longer the one this provider created") {
			t.Errorf("A's /healthz with B's socket at the path: %d %q; want 503 saying it is not A's", code, body)
		}

		a.signal(t, syscall.SIGTERM)
		if code := a.waitExit(t); code != 0 {
			t.Errorf("A exited %d on SIGTERM:\n%s", code, a.stderr)
		}
		if !os.SameFile(bFile, socketFile(t, socket, "after A's SIGTERM")) {
			t.Fatal("B's socket was replaced after A's SIGTERM")
		}
		wantServing(t, socket, "B after A's SIGTERM")
	})
}

// freeLoopbackPort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
