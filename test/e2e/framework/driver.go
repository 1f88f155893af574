//go:build e2e

package framework

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// DriverName is the CSI driver name of secrets-store-csi-driver.
const DriverName = "secrets-store.csi.k8s.io"

// Audience is the token audience Azure workload identity uses.
const Audience = "api://AzureADTokenExchange"

// Driver is a running secrets-store-csi-driver node plugin.
type Driver struct {
	Socket       string
	NodeID       string
	MetricsURL   string
	CSI          *CSIClient
	Process      *Process
	ProvidersDir string
}

// DriverInput configures StartDriver.
type DriverInput struct {
	Config       Config
	ControlPlane *ControlPlane
	NodeID       string
	ProvidersDir string // where providers put <name>.sock
	// RotationPollInterval > 0 enables the rotation reconciler with that interval.
	RotationPollInterval time.Duration
	LogDir               string
	// Binary overrides Config.Driver (e.g. Config.DriverV16).
	Binary string
}

// InstallDriverCRDs creates the SecretProviderClass and SecretProviderClassPodStatus CRDs from
// the driver module and waits until they are established.
func InstallDriverCRDs(ctx context.Context, t testing.TB, k *Kube, dir string) {
	t.Helper()
	Require(t, dir)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s (%v)", dir, err)
	}
	for _, f := range files {
		if err := k.ApplyYAMLFile(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"secretproviderclasses", "secretproviderclasspodstatuses"} {
		path := "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + name + ".secrets-store.csi.x-k8s.io"
		if err := WaitFor(ctx, 30*time.Second, "CRD "+name+" established", func(ctx context.Context) (bool, error) {
			var crd struct {
				Status struct {
					Conditions []struct{ Type, Status string }
				}
			}
			if err := k.Get(ctx, path, &crd); err != nil {
				return false, err
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == "Established" && c.Status == "True" {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The discovery cache of the apiserver needs a moment before the new resources serve.
	if err := WaitFor(ctx, 30*time.Second, "SecretProviderClass API served", func(ctx context.Context) (bool, error) {
		_, err := k.Raw(ctx, http.MethodGet, "/apis/secrets-store.csi.x-k8s.io/v1/secretproviderclasses", nil)
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
}

// CreateCSIDriver creates the CSIDriver object as the driver's chart does for Azure: inline
// ephemeral volumes, pod info on mount, a token for api://AzureADTokenExchange, and
// requiresRepublish if asked (driver v1.6 rotation).
func CreateCSIDriver(ctx context.Context, t testing.TB, k *Kube, requiresRepublish bool) {
	t.Helper()
	obj := Object{
		"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
		"metadata": Object{"name": DriverName},
		"spec": Object{
			"attachRequired": false, "podInfoOnMount": true,
			"volumeLifecycleModes": []string{"Ephemeral"},
			"tokenRequests":        []Object{{"audience": Audience}},
			"requiresRepublish":    requiresRepublish,
		},
	}
	if err := k.Create(ctx, "/apis/storage.k8s.io/v1/csidrivers", obj, nil); err != nil {
		t.Fatalf("create CSIDriver: %v", err)
	}
}

// StartDriver starts the driver and waits until its CSI socket answers GetPluginInfo.
func StartDriver(t testing.TB, in DriverInput) *Driver {
	t.Helper()
	bin := in.Config.Driver
	if in.Binary != "" {
		bin = in.Binary
	}
	Require(t, bin)
	dir := TempDir(t, "", "e2e-csi-")
	d := &Driver{Socket: filepath.Join(dir, "csi.sock"), NodeID: in.NodeID, ProvidersDir: in.ProvidersDir}
	metricsPort := FreePort(t)
	d.MetricsURL = "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
	args := []string{
		"--endpoint=unix://" + d.Socket,
		"--nodeid=" + in.NodeID,
		"--provider-volume=" + in.ProvidersDir,
		"--additional-provider-volume-paths=" + in.ProvidersDir,
		"--metrics-addr=127.0.0.1:" + strconv.Itoa(metricsPort),
		"-v=5",
	}
	if in.RotationPollInterval > 0 {
		args = append(args, "--enable-secret-rotation=true", "--rotation-poll-interval="+in.RotationPollInterval.String())
	}
	start := time.Now()
	d.Process = StartProcess(t, ProcessInput{Name: "secrets-store-csi-driver", Path: bin, LogDir: in.LogDir,
		Args: args, Env: []string{"KUBECONFIG=" + in.ControlPlane.Kubeconfig}})
	csi, err := DialCSI(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = csi.Close() })
	d.CSI = csi
	if err := WaitFor(context.Background(), 30*time.Second, "driver CSI socket", func(ctx context.Context) (bool, error) {
		if ok, err := processAlive(d.Process); !ok {
			return false, err
		}
		if _, err := os.Stat(d.Socket); err != nil {
			return false, nil
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		info, err := csi.GetPluginInfo(cctx)
		if err != nil {
			return false, err
		}
		if info.Name != DriverName {
			return false, fmt.Errorf("plugin name %q, want %q", info.Name, DriverName)
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	node, err := csi.NodeGetInfo(context.Background())
	if err != nil || node != in.NodeID {
		t.Fatalf("NodeGetInfo = %q, %v; want %q", node, err, in.NodeID)
	}
	t.Logf("driver ready in %s (node %s)", time.Since(start).Round(time.Millisecond), in.NodeID)
	return d
}
