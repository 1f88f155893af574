//go:build e2e

package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process whose output goes to a log file.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	mu      sync.Mutex
	waitErr error
	stopped bool
}

// ProcessInput describes a process to start.
type ProcessInput struct {
	Name   string   // short name, also the log file name
	Path   string   // binary
	Args   []string // arguments
	Env    []string // extra KEY=VALUE, appended to a minimal environment
	LogDir string   // where <Name>.log goes
}

// StartProcess starts a process, registers t.Cleanup to stop it (SIGTERM, then SIGKILL after
// 10 s) and, if the test failed, to print the tail of its log.
func StartProcess(t testing.TB, in ProcessInput) *Process {
	t.Helper()
	logPath := filepath.Join(in.LogDir, in.Name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("open log for %s: %v", in.Name, err)
	}
	_, _ = fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), in.Path, strings.Join(in.Args, " "))
	cmd := exec.Command(in.Path, in.Args...)
	cmd.Env = append(baseEnv(), in.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group so a Ctrl-C of `go test` does not race our orderly stop, and so
	// Stop can signal only this child by its pid.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("start %s: %v", in.Name, err)
	}
	p := &Process{Name: in.Name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = f.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	registerLog(t, in.Name, logPath)
	t.Cleanup(p.Stop)
	return p
}

// baseEnv is the environment children get: PATH and HOME only, so a developer's proxy or
// KUBECONFIG never leaks into the test.
func baseEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited, and its wait error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// ExitedUnexpectedly reports whether the process exited without Stop or Kill being called.
func (p *Process) ExitedUnexpectedly() (bool, error) {
	exited, err := p.Exited()
	p.mu.Lock()
	defer p.mu.Unlock()
	return exited && !p.stopped, err
}

// Stop terminates the process (SIGTERM, SIGKILL after 10 s) and waits for it. Idempotent.
func (p *Process) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		<-p.done
		return
	}
	select {
	case <-p.done: // exited by itself: stays "unexpected"
		p.mu.Unlock()
		return
	default:
	}
	p.stopped = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits, as a crash would.
func (p *Process) Kill() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// WaitFor polls cond every 100 ms until it returns true or an error, or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("timed out after %s waiting for %s: last error: %w", timeout, what, last)
			}
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// logRegistry remembers, per test, the log files to print when the test fails.
var logRegistry sync.Map // testing.TB -> *testLogs

type testLogs struct {
	mu    sync.Mutex
	files [][2]string
}

func registerLog(t testing.TB, name, path string) {
	v, loaded := logRegistry.LoadOrStore(t, &testLogs{})
	tl := v.(*testLogs)
	tl.mu.Lock()
	dup := false
	for _, f := range tl.files {
		dup = dup || f[1] == path
	}
	if !dup {
		tl.files = append(tl.files, [2]string{name, path})
	}
	tl.mu.Unlock()
	if loaded {
		return
	}
	// Registered before any Stop cleanup of this test, so it runs after all of them.
	t.Cleanup(func() {
		logRegistry.Delete(t)
		dumpLogs(t, tl)
	})
}

const tailBytes = 12 << 10

func dumpLogs(t testing.TB, tl *testLogs) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if dir := os.Getenv("E2E_ARTIFACTS_DIR"); dir != "" {
		dst := filepath.Join(dir, sanitize(t.Name()))
		if err := os.MkdirAll(dst, 0o755); err == nil {
			for _, f := range tl.files {
				if err := copyFile(f[1], filepath.Join(dst, filepath.Base(f[1]))); err != nil {
					t.Logf("copy %s log: %v", f[0], err)
				}
			}
		}
	}
	if !t.Failed() {
		return
	}
	for _, f := range tl.files {
		b, err := readTail(f[1], tailBytes)
		if err != nil {
			t.Logf("read %s log: %v", f[0], err)
			continue
		}
		t.Logf("----- %s log (last %d bytes of %s) -----\n%s", f[0], len(b), f[1], b)
	}
}

func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > n {
		if _, err := f.Seek(st.Size()-n, io.SeekStart); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(f)
	if i := bytes.IndexByte(b, '\n'); st.Size() > n && i >= 0 {
		b = b[i+1:]
	}
	return b, err
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func sanitize(name string) string {
	return strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(name)
}

// TempDir returns a fresh directory removed in t.Cleanup. Unlike t.TempDir it is short
// (unix socket paths are limited to 107 bytes) and can be placed under base (e.g. a tmpfs).
func TempDir(t testing.TB, base, prefix string) string {
	t.Helper()
	if base != "" {
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			base = ""
		}
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}
