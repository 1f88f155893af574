//go:build e2e

package framework

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
)

// Env is one simulated node: control plane, CRDs and CSIDriver, the emulator and our provider
// (or the driver's fake provider), the driver and the kubelet simulation.
type Env struct {
	T            testing.TB
	Ctx          context.Context
	Config       Config
	CP           *ControlPlane
	Kube         *Kube
	Driver       *Driver
	Kubelet      *Kubelet
	Emulator     *emulator.Emulator // nil with FakeProvider
	EmulatorCA   string
	Provider     *Provider // nil with FakeProvider
	FakeProvider *Process
	NodeID       string
	ProvidersDir string
	LogDir       string
}

// EnvInput configures NewEnv.
type EnvInput struct {
	// Seed for the emulator. The apiserver's service-account issuer is appended to
	// Seed.Issuers, so federated credentials can name it (Env.CP.Issuer).
	Seed *emulator.Seed
	// FakeProvider runs the driver's fake provider instead of the emulator and our provider.
	FakeProvider bool
	// RotationPollInterval > 0 enables the driver's rotation reconciler.
	RotationPollInterval time.Duration
	// SkipCSIDriver leaves the CSIDriver object to the test (e.g. helm).
	SkipCSIDriver bool
	// Issuer overrides the apiserver's service-account issuer.
	Issuer string
	// DriverBinary overrides the driver (Config.DriverV16 for v1.6.x).
	DriverBinary string
	// RequiresRepublish sets CSIDriver.spec.requiresRepublish (v1.6.x rotation).
	RequiresRepublish bool
}

// NewEnv brings a node up; everything is torn down in t.Cleanup.
func NewEnv(t testing.TB, in EnvInput) *Env {
	t.Helper()
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &Env{T: t, Ctx: ctx, Config: cfg, NodeID: "e2e-node-" + strings.ToLower(sanitizeNode(t.Name()))}
	base := TempDir(t, "", "e2e-node-")
	e.LogDir = filepath.Join(base, "logs")
	e.ProvidersDir = filepath.Join(base, "providers")
	for _, d := range []string{e.LogDir, e.ProvidersDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	e.CP = StartControlPlane(t, ControlPlaneInput{Config: cfg, Issuer: in.Issuer})
	e.Kube = e.CP.Kube
	InstallDriverCRDs(ctx, t, e.Kube, cfg.DriverCRDs)
	if !in.SkipCSIDriver {
		CreateCSIDriver(ctx, t, e.Kube, in.RequiresRepublish)
	}
	if in.FakeProvider {
		e.FakeProvider = StartFakeProvider(t, cfg, e.ProvidersDir, e.LogDir)
	} else {
		seed := in.Seed
		if seed == nil {
			seed = &emulator.Seed{}
		}
		s := *seed
		s.Issuers = append(append([]emulator.Issuer(nil), seed.Issuers...), emulator.Issuer{URL: e.CP.Issuer, PublicKeyFile: e.CP.SAKeyPub})
		e.Emulator, e.EmulatorCA = StartEmulator(t, &s, e.LogDir)
		e.Provider = StartProvider(t, ProviderInput{Config: cfg, ProvidersDir: e.ProvidersDir, ProxyURL: e.Emulator.ProxyURL(), CAFile: e.EmulatorCA, LogDir: e.LogDir})
	}
	e.Driver = StartDriver(t, DriverInput{Config: cfg, ControlPlane: e.CP, NodeID: e.NodeID, ProvidersDir: e.ProvidersDir, RotationPollInterval: in.RotationPollInterval, LogDir: e.LogDir, Binary: in.DriverBinary})
	e.Kubelet = NewKubelet(t, e.NodeID, e.Kube, e.Driver.CSI)
	t.Logf("node %s up in %s", e.NodeID, time.Since(start).Round(time.Millisecond))
	// Post-test check, as Azure's suite does after its run: our provider must not have
	// crashed or restarted by itself during the test.
	t.Cleanup(func() {
		if e.Provider != nil {
			if exited, err := e.Provider.Process.ExitedUnexpectedly(); exited {
				t.Errorf("provider exited during the test: %v", err)
			}
		}
		if exited, err := e.Driver.Process.ExitedUnexpectedly(); exited {
			t.Errorf("driver exited during the test: %v", err)
		}
	})
	return e
}

func sanitizeNode(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	s := b.String()
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.Trim(s, "-")
}

// Namespace creates a namespace and a service account in it.
func (e *Env) Namespace(name, serviceAccount string, saAnnotations map[string]string) {
	e.T.Helper()
	CreateNamespace(e.Ctx, e.T, e.Kube, name)
	if serviceAccount != "" {
		CreateServiceAccount(e.Ctx, e.T, e.Kube, name, serviceAccount, saAnnotations)
	}
}

// Pod creates a pod on this env's node.
func (e *Env) Pod(in PodInput) Pod {
	e.T.Helper()
	in.NodeName = e.NodeID
	return CreatePod(e.Ctx, e.T, e.Kube, in)
}
