//go:build node

package e2enode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// env is what hack/e2e/node.sh hands over: the cluster it started and the tools it built.
type env struct {
	dir, bin, helm, nodeIP, issuer, saPub string
	pki, clusterID, natChain, kubeSvcIP   string
	apiAddr                               string // the API server's own address, behind the kubernetes Service
}

func loadEnv() (env, error) {
	e := env{dir: os.Getenv("E2E_NODE_DIR"), bin: os.Getenv("E2E_BIN_DIR"), helm: os.Getenv("E2E_HELM"),
		nodeIP: os.Getenv("E2E_NODE_IP"), issuer: os.Getenv("E2E_ISSUER"), saPub: os.Getenv("E2E_SA_PUB"),
		pki: os.Getenv("E2E_PKI"), clusterID: os.Getenv("E2E_CLUSTER_ID"), natChain: os.Getenv("E2E_NAT_CHAIN"), kubeSvcIP: os.Getenv("E2E_KUBE_SVC_IP"), apiAddr: os.Getenv("E2E_API_ADDR")}
	for k, v := range map[string]string{"E2E_NODE_DIR": e.dir, "E2E_BIN_DIR": e.bin, "E2E_HELM": e.helm, "E2E_NODE_IP": e.nodeIP, "E2E_ISSUER": e.issuer, "E2E_SA_PUB": e.saPub,
		"E2E_PKI": e.pki, "E2E_CLUSTER_ID": e.clusterID, "E2E_NAT_CHAIN": e.natChain, "E2E_KUBE_SVC_IP": e.kubeSvcIP, "E2E_API_ADDR": e.apiAddr} {
		if v == "" {
			return e, fmt.Errorf("%s is not set: run these tests with make e2e-node (hack/e2e/node.sh), which starts the node", k)
		}
	}
	return e, nil
}

// run runs a command with the cluster's kubeconfig and returns its stdout; stderr goes into the error.
func (e env) run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	return e.runEnv(ctx, stdin, nil, name, args...)
}

// runEnv is run with extra environment variables (NAME=VALUE).
func (e env) runEnv(ctx context.Context, stdin string, extraEnv []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+filepath.Join(e.dir, "admin.kubeconfig"), "HOME="+e.dir), extraEnv...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (e env) kubectl(ctx context.Context, args ...string) (string, error) {
	return e.run(ctx, "", filepath.Join(e.bin, "kubectl"), args...)
}

// must runs kubectl and fails the test on error.
func (e env) must(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := e.kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e env) apply(t *testing.T, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.run(ctx, manifest, filepath.Join(e.bin, "kubectl"), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, manifest)
	}
}

func (e env) helmRun(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := e.run(ctx, "", e.helm, args...)
	t.Logf("helm %s (%s)", args[0], time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually retries f every second until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func(context.Context) error) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		last = f(ctx)
		cancel()
		if last == nil {
			return time.Since(start)
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s: not after %s: %v", what, timeout, last)
	return 0
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// fileState is one mounted file as a container sees it.
type fileState struct {
	sum, mode, owner string
}

// mountedFiles lists, from inside the container, every file of the volume at dir with its
// SHA-256, mode and owner (through the driver's ..data symlinks, as the application reads them).
func (e env) mountedFiles(ctx context.Context, ns, pod, dir string) (map[string]fileState, error) {
	out, err := e.kubectl(ctx, "exec", "-n", ns, pod, "--", "sh", "-c",
		`cd "$1" && for f in *; do printf '%s %s %s\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$(stat -L -c '%a %u:%g' "$f")" "$f"; done`, "sh", dir)
	if err != nil {
		return nil, err
	}
	files := map[string]fileState{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			return nil, fmt.Errorf("pod %s/%s: unexpected line %q", ns, pod, l)
		}
		files[f[3]] = fileState{sum: f[0], mode: f[1], owner: f[2]}
	}
	return files, nil
}

// checkFiles compares a pod's mounted files with the want map (file -> SHA-256) and the mode
// map (file -> octal mode; default 644); every file is owned by root, as the driver writes it.
func checkFiles(ns, pod string, got map[string]fileState, want map[string]string, modes map[string]string) error {
	var errs []string
	for name, sum := range want {
		g, ok := got[name]
		mode := modes[name]
		if mode == "" {
			mode = "644"
		}
		switch {
		case !ok:
			errs = append(errs, fmt.Sprintf("pod %s/%s: file %s is missing", ns, pod, name))
		case g.sum != sum:
			errs = append(errs, fmt.Sprintf("pod %s/%s: file %s has SHA-256 %s, want %s (the emulator's value)", ns, pod, name, g.sum, sum))
		case g.mode != mode || g.owner != "0:0":
			errs = append(errs, fmt.Sprintf("pod %s/%s: file %s has mode %s owner %s, want %s 0:0", ns, pod, name, g.mode, g.owner, mode))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			errs = append(errs, fmt.Sprintf("pod %s/%s: unexpected file %s", ns, pod, name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// podNames lists the pods matching a label selector.
func (e env) podNames(t *testing.T, ns, selector string) []string {
	t.Helper()
	out := e.must(t, "get", "pods", "-n", ns, "-l", selector, "-o", "jsonpath={.items[*].metadata.name}")
	return strings.Fields(out)
}

// events returns the messages of a pod's events with the given reason.
func (e env) events(ctx context.Context, ns, pod, reason string) ([]string, error) {
	out, err := e.kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "involvedObject.name="+pod+",reason="+reason, "-o", "json")
	if err != nil {
		return nil, err
	}
	var l struct{ Items []struct{ Message string } }
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, err
	}
	var msgs []string
	for _, it := range l.Items {
		msgs = append(msgs, it.Message)
	}
	return msgs, nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// driverRotations sums the driver's rotation_reconcile counter (one per pod rotation) from its
// metrics endpoint on the pod network, at the port its container calls metrics (the chart sets
// Azure's :8080).
func driverRotations(t *testing.T, e env) int64 {
	t.Helper()
	addr := strings.Fields(e.must(t, "get", "pods", "-n", releaseNS, "-l", driverPods, "-o",
		`jsonpath={.items[0].status.podIP} {.items[0].spec.containers[*].ports[?(@.name=="metrics")].containerPort}`))
	if len(addr) != 2 {
		t.Fatalf("driver pod address and metrics port: %q", addr)
	}
	resp, err := http.Get("http://" + net.JoinHostPort(addr[0], addr[1]) + "/metrics")
	if err != nil {
		t.Fatalf("driver metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	found := false
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "rotation_reconcile_total") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("driver metrics line %q: %v", l, err)
		}
		n += int64(v)
		found = true
	}
	if !found && strings.Contains(string(body), "rotation_reconcile") {
		t.Fatalf("driver metrics: rotation_reconcile present but not as rotation_reconcile_total")
	}
	return n
}

// waitReady runs a kubectl wait or rollout in ns; when it fails, the error carries the
// namespace's FailedMount and other warning events, which say why a volume did not mount.
func (e env) waitReady(t *testing.T, ns string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e.kubectl(ctx, append([]string{"-n", ns}, args...)...); err != nil {
		out, _ := e.kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "type=Warning", "-o",
			`jsonpath={range .items[*]}{.involvedObject.kind}/{.involvedObject.name} {.reason}: {.message}{"\n"}{end}`)
		t.Fatalf("%v\nwarning events in namespace %s:\n%s", err, ns, out)
	}
}
