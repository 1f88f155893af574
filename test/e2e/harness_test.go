//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestHarnessWithFakeProvider checks the stack without our code: the driver's own fake
// provider behind the real driver, a real apiserver, the simulated kubelet, and secret sync.
// When this fails, the harness is broken, not the provider.
func TestHarnessWithFakeProvider(t *testing.T) {
	e := framework.NewEnv(t, framework.EnvInput{FakeProvider: true})
	ctx := e.Ctx
	e.Namespace("fake", "app", nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{
		Namespace: "fake", Name: "fake-spc", Provider: "fake",
		Parameters: map[string]string{"anything": "x"},
		SecretObjects: []framework.Object{{
			"secretName": "synced-fake", "type": "Opaque",
			"data": []framework.Object{{"objectName": "foo", "key": "FOO"}},
		}},
	})
	pod := e.Pod(framework.PodInput{Namespace: "fake", Name: "app", ServiceAccount: "app", SPC: "fake-spc"})

	start := time.Now()
	m, err := e.Kubelet.Publish(ctx, pod, "")
	if err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	t.Logf("NodePublishVolume took %s", time.Since(start).Round(time.Millisecond))
	if fs, err := framework.FSType(m.TargetPath); err != nil || fs != "tmpfs" {
		t.Errorf("target %s has file system %q (%v), want tmpfs", m.TargetPath, fs, err)
	}
	if got := readFile(t, m, "foo"); got != "foo-value" {
		t.Errorf("foo = %q, want foo-value", got)
	}
	checkMode(t, m, "bar", 0o600)
	eventually(t, 30*time.Second, "SecretProviderClassPodStatus", func(ctx context.Context) error {
		v, mounted, err := podStatusVersions(ctx, e, pod, "fake-spc")
		if err != nil {
			return err
		}
		if !mounted || v["secret/foo"] != "v1" {
			return fmt.Errorf("mounted=%v versions=%v", mounted, v)
		}
		return nil
	})
	eventually(t, 30*time.Second, "synced secret", func(ctx context.Context) error {
		s, err := framework.GetSecret(ctx, e.Kube, "fake", "synced-fake")
		if err != nil {
			return err
		}
		v, err := s.Value("FOO")
		if err != nil {
			return err
		}
		if v != "foo-value" {
			return fmt.Errorf("FOO = %q, want foo-value", v)
		}
		if s.Metadata.Labels["secrets-store.csi.k8s.io/managed"] != "true" {
			return fmt.Errorf("labels %v lack secrets-store.csi.k8s.io/managed=true", s.Metadata.Labels)
		}
		return nil
	})
	if err := e.Kubelet.Unpublish(ctx, m); err != nil {
		t.Fatal(err)
	}
}
