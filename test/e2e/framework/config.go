//go:build e2e

package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Config locates the binaries and files the harness needs. Load reads it from the environment:
//
//	E2E_BIN_DIR        kube-apiserver, kubectl, secrets-store-csi-driver (v1.5.6), secrets-store-csi-driver-v1.6.1,
//	                   fakeprovider (default <repo>/_output/e2e/bin)
//	E2E_ETCD           etcd binary (default: etcd on PATH)
//	E2E_DRIVER_CRDS    the driver's CRD directory (charts/secrets-store-csi-driver/crds in its module)
//	E2E_DRIVER_CHART   the driver's chart directory (charts/secrets-store-csi-driver in its module)
//	E2E_PROVIDER_BIN   our provider (default <repo>/_output/bin/provider)
//	E2E_HELM           helm binary (default <repo>/_output/tools/bin/helm)
//	E2E_CHART          our chart (default <repo>/deploy/helm/akv-provider)
//	E2E_ARTIFACTS_DIR  if set, component logs of every test are copied there
type Config struct {
	RepoRoot      string
	BinDir        string
	Etcd          string
	KubeAPIServer string
	Kubectl       string
	Driver        string
	DriverV16     string // secrets-store-csi-driver v1.6.x (re-publish rotation)
	FakeProvider  string
	DriverCRDs    string
	DriverChart   string
	Provider      string
	Helm          string
	Chart         string
	ArtifactsDir  string
}

// LoadConfig reads Config from the environment, with defaults relative to the repository root.
func LoadConfig() (Config, error) {
	root, err := repoRoot()
	if err != nil {
		return Config{}, err
	}
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	c := Config{RepoRoot: root}
	c.BinDir = env("E2E_BIN_DIR", filepath.Join(root, "_output", "e2e", "bin"))
	c.Etcd = env("E2E_ETCD", "etcd")
	if p, err := exec.LookPath(c.Etcd); err == nil {
		c.Etcd = p
	}
	c.KubeAPIServer = filepath.Join(c.BinDir, "kube-apiserver")
	c.Kubectl = filepath.Join(c.BinDir, "kubectl")
	c.Driver = filepath.Join(c.BinDir, "secrets-store-csi-driver")
	c.DriverV16 = filepath.Join(c.BinDir, "secrets-store-csi-driver-v1.6.1")
	c.FakeProvider = filepath.Join(c.BinDir, "fakeprovider")
	c.DriverCRDs = os.Getenv("E2E_DRIVER_CRDS")
	c.DriverChart = os.Getenv("E2E_DRIVER_CHART")
	c.Provider = env("E2E_PROVIDER_BIN", filepath.Join(root, "_output", "bin", "provider"))
	c.Helm = env("E2E_HELM", filepath.Join(root, "_output", "tools", "bin", "helm"))
	c.Chart = env("E2E_CHART", filepath.Join(root, "deploy", "helm", "akv-provider"))
	c.ArtifactsDir = os.Getenv("E2E_ARTIFACTS_DIR")
	return c, nil
}

// Require fails the test unless every named file exists. The message says how to build them.
func Require(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if p == "" {
			t.Fatalf("a required e2e input is not configured (empty path); run hack/e2e/run.sh, which sets E2E_* variables")
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("e2e input missing: %v; build it with `make e2e` (hack/e2e/run.sh)", err)
		}
	}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && len(b) > 0 && containsModule(b, "github.com/akv-csi/provider") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of github.com/akv-csi/provider above %s", dir)
		}
	}
}

func containsModule(gomod []byte, mod string) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		if strings.TrimSpace(line) == "module "+mod {
			return true
		}
	}
	return false
}
