//go:build e2e

package e2e

import (
	"testing"
	"time"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestRepublishRotationDriverV16 (stretch): driver v1.6.x rotates when kubelet re-publishes a
// volume of a CSIDriver with requiresRepublish, instead of running its own reconciler. The
// kubelet simulation re-publishes every second, with a fresh token each time as kubelet does;
// the new version must reach the file, the synced Secret and the pod status.
func TestRepublishRotationDriverV16(t *testing.T) {
	cfg, err := framework.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	const ns, sa, spc = "republish", "workload", "kv-republish"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(subject(ns, sa)),
		DriverBinary: cfg.DriverV16, RequiresRepublish: true, RotationPollInterval: 2 * time.Second})
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
	if got := readFile(t, m, "db-password"); got != dbPasswordV1 {
		t.Fatalf("db-password = %q", got)
	}
	const v2Value = "e2e-db-password-v2"
	v2, err := e.Emulator.AddSecretVersion(vault, "db-password", v2Value)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	republishes := 0
	for {
		republishes++
		if _, err := e.Kubelet.Publish(ctx, pod, ""); err != nil {
			t.Fatalf("re-publish %d: %v", republishes, err)
		}
		got, _ := m.File("db-password")
		if got == v2Value {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("db-password = %q after %d re-publishes in %s; want %q", got, republishes, time.Since(start), v2Value)
		}
		time.Sleep(time.Second) // kubelet re-publishes on its volume manager's sync, about every second or more
	}
	t.Logf("rotated %s after the new version, %d re-publishes", time.Since(start).Round(time.Millisecond), republishes)
	waitRotated(t, e, pod, spc, ns, v2Value, v2)
}
