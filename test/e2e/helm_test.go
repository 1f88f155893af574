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

// TestHelmInstall installs deploy/helm/akv-provider, with the driver chart vendored from the
// driver's Go module, into a real apiserver and reads the objects back. There is no kubelet, so
// nothing runs; the apiserver validates every object and the test checks how they fit together.
func TestHelmInstall(t *testing.T) {
	cfg, err := framework.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	framework.Require(t, cfg.Helm, cfg.Chart, cfg.DriverChart)
	cp := framework.StartControlPlane(t, framework.ControlPlaneInput{Config: cfg})
	ctx := context.Background()
	dir := t.TempDir()

	// helm needs the dependency in charts/ even when it is disabled; package it from the
	// driver module into a copy of the chart, never into the source tree.
	chart := filepath.Join(dir, "akv-provider")
	if out, err := exec.Command("cp", "-r", cfg.Chart, chart).CombinedOutput(); err != nil {
		t.Fatalf("copy chart: %v: %s", err, out)
	}
	helm := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cfg.Helm, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "KUBECONFIG=" + cp.Kubeconfig,
			"HELM_CACHE_HOME=" + filepath.Join(dir, "cache"), "HELM_CONFIG_HOME=" + filepath.Join(dir, "config"),
			"HELM_DATA_HOME=" + filepath.Join(dir, "data")}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("helm %s (%s)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	helm("package", cfg.DriverChart, "-d", filepath.Join(chart, "charts"))
	helm("lint", "--strict", chart, "--set", "secrets-store-csi-driver.install=true")
	// The driver chart's CRD hook Job would wait for a kubelet forever: disable it; helm still
	// installs the CRDs from the subchart's crds/ directory.
	helm("install", "akv", chart, "-n", "kube-system",
		"--set", "secrets-store-csi-driver.install=true",
		"--set", "secrets-store-csi-driver.linux.crds.enabled=false",
		"--set", "secrets-store-csi-driver.syncSecret.enabled=true",
		"--set", "secrets-store-csi-driver.enableSecretRotation=true",
		// Non-default values, to check that what the apiserver stored is what was asked for.
		"--set", "logVerbosity=4", "--set", "linux.metricsPort=9123", "--set", "constructPEMChain=false",
		"--set", "cloudName=AzureChinaCloud")
	if out := helm("status", "akv", "-n", "kube-system"); !strings.Contains(out, "STATUS: deployed") {
		t.Errorf("helm status:\n%s", out)
	}

	// CSIDriver with the workload identity token request (dropped by the driver chart if the
	// apiserver version were not stamped).
	var drv struct {
		Spec struct {
			TokenRequests        []struct{ Audience string }
			VolumeLifecycleModes []string
			PodInfoOnMount       bool
		}
	}
	if err := cp.Kube.Get(ctx, "/apis/storage.k8s.io/v1/csidrivers/"+framework.DriverName, &drv); err != nil {
		t.Fatal(err)
	}
	if len(drv.Spec.TokenRequests) != 2 || drv.Spec.TokenRequests[0].Audience != framework.Audience ||
		drv.Spec.TokenRequests[1].Audience != "api://AKSIdentityBinding" || !drv.Spec.PodInfoOnMount {
		t.Errorf("CSIDriver spec %+v: want podInfoOnMount and token requests for %s and api://AKSIdentityBinding", drv.Spec, framework.Audience)
	}
	for _, crd := range []string{"secretproviderclasses", "secretproviderclasspodstatuses"} {
		if err := cp.Kube.Get(ctx, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+crd+".secrets-store.csi.x-k8s.io", nil); err != nil {
			t.Errorf("CRD %s: %v", crd, err)
		}
	}

	type container struct {
		Name, Image string
		Args        []string
		Ports       []struct {
			Name          string
			ContainerPort int
		}
		SecurityContext *struct {
			ReadOnlyRootFilesystem   *bool
			AllowPrivilegeEscalation *bool
			Capabilities             *struct{ Drop []string }
		}
		VolumeMounts []struct{ Name, MountPath string }
	}
	type daemonSet struct {
		Metadata struct{ Name string }
		Spec     struct {
			Template struct {
				Spec struct {
					AutomountServiceAccountToken *bool
					Containers                   []container
					Volumes                      []struct {
						Name     string
						HostPath *struct{ Path string }
					}
				}
			}
		}
	}
	var dsl struct{ Items []daemonSet }
	if err := cp.Kube.Get(ctx, "/apis/apps/v1/namespaces/kube-system/daemonsets", &dsl); err != nil {
		t.Fatal(err)
	}
	var provider, driver *daemonSet
	for i := range dsl.Items {
		for _, c := range dsl.Items[i].Spec.Template.Spec.Containers {
			if strings.Contains(strings.Join(c.Args, " "), "/azure.sock") {
				provider = &dsl.Items[i]
			}
			if c.Name == "secrets-store" {
				driver = &dsl.Items[i]
			}
		}
	}
	if provider == nil || driver == nil {
		t.Fatalf("want a provider DaemonSet (args with azure.sock) and the driver DaemonSet; got %d DaemonSets", len(dsl.Items))
	}
	hostPaths := func(ds *daemonSet) map[string]bool {
		m := map[string]bool{}
		for _, v := range ds.Spec.Template.Spec.Volumes {
			if v.HostPath != nil {
				m[v.HostPath.Path] = true
			}
		}
		return m
	}
	driverPaths := hostPaths(driver)
	shared := false
	for p := range hostPaths(provider) {
		if driverPaths[p] && strings.Contains(p, "secrets-store-csi-providers") {
			shared = true
		}
	}
	if !shared {
		t.Errorf("the provider's socket directory %v is not one the driver mounts %v", hostPaths(provider), driverPaths)
	}
	ps := provider.Spec.Template.Spec
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("provider DaemonSet mounts a service account token; it never calls the Kubernetes API")
	}
	c := ps.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("provider container %s: want readOnlyRootFilesystem and no privilege escalation", c.Name)
	}
	args := " " + strings.Join(c.Args, " ") + " "
	for _, want := range []string{" -v=4 ", " --prometheus-port=9123 ", " --construct-pem-chain=false ", " --cloud-name=AzureChinaCloud ", " --endpoint=unix:///provider/azure.sock "} {
		if !strings.Contains(args, want) {
			t.Errorf("provider args %q lack %q from the values", args, want)
		}
	}
	metricsPort := false
	for _, p := range c.Ports {
		metricsPort = metricsPort || (p.Name == "metrics" && p.ContainerPort == 9123)
	}
	if !metricsPort {
		t.Errorf("provider ports %+v: want metrics on 9123, the same value as --prometheus-port", c.Ports)
	}
	t.Logf("provider DaemonSet %s, image %s, args %v", provider.Metadata.Name, c.Image, c.Args)

	helm("uninstall", "akv", "-n", "kube-system")
	if err := cp.Kube.Get(ctx, "/apis/apps/v1/namespaces/kube-system/daemonsets/"+provider.Metadata.Name, nil); !framework.IsNotFound(err) {
		t.Errorf("provider DaemonSet still there after uninstall: %v", err)
	}
}
