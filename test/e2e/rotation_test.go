//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestRotation: with the v1.5.6 rotation reconciler (--enable-secret-rotation,
// --rotation-poll-interval=2s), a new secret version in the vault reaches the mounted file, the
// synced Secret and the SecretProviderClassPodStatus.
func TestRotation(t *testing.T) {
	const ns, sa, spc = "rotate", "workload", "kv-rotate"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(subject(ns, sa)), RotationPollInterval: 2 * time.Second})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc,
		Parameters: wiParams(wiClientID, obj{Name: "db-password", Type: "secret"}),
		SecretObjects: []framework.Object{{"secretName": "db-creds", "type": "Opaque",
			"data": []framework.Object{{"objectName": "db-password", "key": "password"}}}},
	})
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app", ServiceAccount: sa, SPC: spc})
	m, err := e.Kubelet.Publish(ctx, pod, "")
	if err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	v1 := latestSecretVersion(t, e, "db-password")
	eventually(t, 30*time.Second, "synced secret v1", func(ctx context.Context) error {
		s, err := framework.GetSecret(ctx, e.Kube, ns, "db-creds")
		if err != nil {
			return err
		}
		if v, _ := s.Value("password"); v != dbPasswordV1 {
			return fmt.Errorf("password = %q", v)
		}
		return nil
	})

	const v2Value = "e2e-db-password-v2"
	v2, err := e.Emulator.AddSecretVersion(vault, "db-password", v2Value)
	if err != nil {
		t.Fatal(err)
	}
	if v2 == v1 {
		t.Fatalf("new version %s equals the old one", v2)
	}
	start := time.Now()
	eventually(t, 60*time.Second, "rotated file", func(context.Context) error {
		if got, _ := m.File("db-password"); got != v2Value {
			return fmt.Errorf("db-password = %q", got)
		}
		return nil
	})
	t.Logf("file rotated %s after the new version", time.Since(start).Round(time.Millisecond))
	waitRotated(t, e, pod, spc, ns, v2Value, v2)
	evs, err := framework.ListEvents(ctx, e.Kube, ns)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, ev := range evs {
		reasons = append(reasons, ev.Reason)
	}
	if !strings.Contains(strings.Join(reasons, ","), "MountRotationComplete") {
		t.Errorf("no MountRotationComplete event on the pod; events: %v", reasons)
	}
}
