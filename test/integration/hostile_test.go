package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
)

// providerBinary builds the provider binary once per test process, as make build does.
func providerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "akv-provider-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBinary = filepath.Join(dir, "provider")
		build := exec.Command("go", "build", "-trimpath", "-o", builtBinary, "github.com/akv-csi/provider/cmd/provider")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBinary
}

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
)

// binaryProc is a provider binary running as the DaemonSet runs it, with a driver-side client.
type binaryProc struct {
	client v1alpha1.CSIDriverProviderClient
	proc   *os.Process
	stderr *syncBuffer // its log (also copied to logs, which TestMain scans for secrets)
}

// startBinary starts the provider binary as the DaemonSet runs it, and returns a driver-side
// client and the process.
func startBinary(t *testing.T, args ...string) (v1alpha1.CSIDriverProviderClient, *os.Process) {
	t.Helper()
	b := startBinaryEnv(t, nil, args...)
	return b.client, b.proc
}

// startBinaryEnv is startBinary with extra environment variables (the emulator's are inherited).
func startBinaryEnv(t *testing.T, env []string, args ...string) *binaryProc {
	t.Helper()
	bin := providerBinary(t)
	socket := filepath.Join(t.TempDir(), "azure.sock")
	cmd := exec.Command(bin, append([]string{"--endpoint=unix://" + socket, "--healthz-port=0", "--prometheus-port=0"}, args...)...)
	b := &binaryProc{stderr: &syncBuffer{}}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = io.MultiWriter(b.stderr, &logs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the provider did not create its socket within 10s")
		}
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	b.client, b.proc = v1alpha1.NewCSIDriverProviderClient(conn), cmd.Process
	return b
}

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// TestHostileInputsAgainstTheBinary sends the provider binary what a SecretProviderClass author
// may write to exhaust it. Each answers within 2s with a specific code; the process stays up
// under 100 MiB peak RSS and mounts normally afterwards.
func TestHostileInputsAgainstTheBinary(t *testing.T) {
	const maxResponse = 4 << 10
	c, proc := startBinary(t, "--max-response-bytes="+strconv.Itoa(maxResponse))
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "cloud.json")
	if err := os.WriteFile(notJSON, []byte("hunter2-file-content-Vb8"), 0o600); err != nil {
		t.Fatal(err)
	}
	var bomb strings.Builder // the billion laughs, in the objects parameter
	bomb.WriteString("a0: &a0 [\"objectName: x\"]\n")
	for i := 1; i <= 9; i++ {
		bomb.WriteString("a" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " [")
		for j := range 10 {
			if j > 0 {
				bomb.WriteString(",")
			}
			bomb.WriteString("*a" + strconv.Itoa(i-1))
		}
		bomb.WriteString("]\n")
	}
	bomb.WriteString("array: *a9\n")
	many := "array: [" + strings.TrimSuffix(strings.Repeat("x,", 20000), ",") + "]"
	with := func(extra map[string]string, objs string) mountRequest {
		r := spRequest(spOK)
		r.params[config.Objects] = objs
		for k, v := range extra {
			r.params[k] = v
		}
		return r
	}
	tests := []hostileCase{
		{"history 10^6", with(nil, objects(plainSecret+"\nobjectVersionHistory: 1000000")), codes.InvalidArgument, "objectVersionHistory 1000000 is more than the 100 allowed"},
		{"history 2^31-1", with(nil, objects(plainSecret+"\nobjectVersionHistory: 2147483647")), codes.InvalidArgument, "objectVersionHistory 2147483647 is more than the 100 allowed"},
		{"/dev/zero as cloud file", with(map[string]string{config.CloudName: config.AzureStackCloud, config.CloudEnvFileName: "/dev/zero"}, objects(plainSecret)),
			codes.InvalidArgument, "a character device, not a regular file"},
		{"a cloud file that is not JSON", with(map[string]string{config.CloudName: config.AzureStackCloud, config.CloudEnvFileName: notJSON}, objects(plainSecret)),
			codes.InvalidArgument, "is not an Azure environment JSON file"},
		{"20,000 objects", with(nil, many), codes.InvalidArgument, "20000 entries, more than the 256 allowed"},
		{"a YAML alias bomb", with(nil, bomb.String()), codes.InvalidArgument, "expands (through its aliases) to more than 10000 YAML nodes"},
		{"a 100,000-character alias", with(nil, objects(plainSecret+"\nobjectAlias: "+strings.Repeat("a", 100000))), codes.InvalidArgument, `parameter "objects" is 100`},
		{"a 300-character alias", with(nil, objects(plainSecret+"\nobjectAlias: "+strings.Repeat("a", 300))), codes.InvalidArgument, "objectAlias of 300 characters"},
		{"a mapping of 1,000 repeated keys", with(nil, objects("{"+strings.TrimSuffix(strings.Repeat("a,", 1000), ",")+"}")), codes.InvalidArgument, "a mapping has 1000 keys, more than the 64 allowed"},
		{"900 KiB in one parameter", with(map[string]string{"padding": strings.Repeat("p", 900<<10)}, objects(plainSecret)), codes.InvalidArgument, `parameter "padding" is 921600 bytes`},
		{"1.5 MiB of parameters", with(map[string]string{"padding": strings.Repeat("p", 1536<<10)}, objects(plainSecret)), codes.InvalidArgument, "the mount request's parameters are"},
		{"3 MiB of parameters", with(map[string]string{"padding": strings.Repeat("p", 3<<20)}, objects(plainSecret)), codes.ResourceExhausted, "larger than max"},
		{"a response over the limit", with(nil, objects("objectName: web-pfx\nobjectType: secret", "objectName: web-pem\nobjectType: secret")),
			codes.ResourceExhausted, "--max-response-bytes"},
	}
	checkHostile(t, c, tests, "hunter2") // the cloud file's content
	if rss := peakRSS(t, proc.Pid); rss > 100<<20 {
		t.Errorf("peak RSS %d MiB, want under 100 MiB", rss>>20)
	} else {
		t.Logf("peak RSS after the hostile inputs: %.1f MiB", float64(rss)/(1<<20))
	}
	resp, err := mount(t, c, spRequest(spOK, plainSecret))
	if err != nil || string(files(resp)["plain"].GetContents()) != plainValue {
		t.Fatalf("a normal mount after the hostile inputs: %v", err)
	}
}
