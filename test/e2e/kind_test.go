//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestKind installs the driver chart (vendored from the driver module) and our chart into a kind
// cluster and waits for both DaemonSets to be ready, i.e. the provider serves its socket and
// /healthz on a real kubelet. It needs Docker, kind, and a provider image:
//
//	E2E_KIND_IMAGE=ghcr.io/akv-csi/provider:dev   image to load into kind (built beforehand)
//	E2E_KIND=kind                                 kind binary (default: kind on PATH)
//
// Where `docker info` fails it skips and says so; the loopback tests above cover the rest.
func TestKind(t *testing.T) {
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("kind variant skipped: `docker info` failed (%v): %s", err, firstLine(string(out)))
	}
	image := os.Getenv("E2E_KIND_IMAGE")
	if image == "" {
		t.Skip("kind variant skipped: set E2E_KIND_IMAGE to a provider image (see test/e2e/README.md)")
	}
	kind := os.Getenv("E2E_KIND")
	if kind == "" {
		kind = "kind"
	}
	cfg, err := framework.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	framework.Require(t, cfg.Helm, cfg.Chart, cfg.DriverChart, cfg.Kubectl)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HELM_CACHE_HOME="+filepath.Join(dir, "helm"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cluster := "akv-e2e"
	run(kind, "create", "cluster", "--name", cluster, "--kubeconfig", kubeconfig, "--wait", "2m")
	t.Cleanup(func() { _ = exec.Command(kind, "delete", "cluster", "--name", cluster).Run() })
	run(kind, "load", "docker-image", image, "--name", cluster)

	chart := filepath.Join(dir, "akv-provider")
	run("cp", "-r", cfg.Chart, chart)
	run(cfg.Helm, "package", cfg.DriverChart, "-d", filepath.Join(chart, "charts"))
	repo, tag, _ := strings.Cut(image, ":")
	run(cfg.Helm, "install", "akv", chart, "-n", "kube-system", "--wait", "--timeout", "5m",
		"--set", "secrets-store-csi-driver.install=true",
		"--set", "linux.image.repository="+repo, "--set", "linux.image.tag="+tag,
		"--set", "linux.image.pullPolicy=Never")
	out := run(cfg.Kubectl, "get", "daemonsets", "-n", "kube-system", "-o", "wide")
	t.Logf("daemonsets:\n%s", out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
