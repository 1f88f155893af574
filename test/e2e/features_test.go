//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestJSONKeyAndTagSelection, through the real driver with the v1.5.6 rotation reconciler
// (2 s poll): a member of a JSON secret (objectJSONKey) is mounted and synced into a Kubernetes
// Secret (secretObjects), and every secret tagged team=payments (objectTags) is mounted under a
// directory. Then a new tagged secret appears in the volume, and a changed JSON member is
// rewritten in the file and in the synced Secret.
func TestJSONKeyAndTagSelection(t *testing.T) {
	const ns, sa, spc = "features", "workload", "kv-features"
	const pw1, pw2 = "e2e-json-pw-1", "e2e-json-pw-2"
	seed := baseSeed(subject(ns, sa))
	tagged := map[string]string{"team": "payments"}
	seed.Vaults[0].Secrets = append(seed.Vaults[0].Secrets,
		emulator.Secret{Name: "app-config", Versions: []emulator.SecretVersion{{Value: `{"db": {"user": "app", "password": "` + pw1 + `"}}`}}},
		emulator.Secret{Name: "pay-a", Versions: []emulator.SecretVersion{{Value: "e2e-pay-a", Tags: tagged}}},
		emulator.Secret{Name: "pay-b", Versions: []emulator.SecretVersion{{Value: "e2e-pay-b", Tags: map[string]string{"team": "payments", "env": "dev"}}}},
		emulator.Secret{Name: "other", Versions: []emulator.SecretVersion{{Value: "e2e-other", Tags: map[string]string{"team": "web"}}}},
	)
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: seed, RotationPollInterval: 2 * time.Second})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc,
		Parameters: map[string]string{"keyvaultName": vault, "tenantId": tenantID, "clientID": wiClientID, "objects": `array:
  - |
    objectName: app-config
    objectType: secret
    objectJSONKey: db.password
    objectAlias: db-password
    filePermission: "0400"
  - |
    objectTags: team=payments
    objectType: secret
    objectAlias: payments
`},
		SecretObjects: []framework.Object{{"secretName": "app-db", "type": "Opaque",
			"data": []framework.Object{{"objectName": "db-password", "key": "password"}}}},
	})
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app", ServiceAccount: sa, SPC: spc})
	m, err := e.Kubelet.Publish(ctx, pod, "")
	if err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	for file, want := range map[string]string{"db-password": pw1, "payments/pay-a": "e2e-pay-a", "payments/pay-b": "e2e-pay-b"} {
		if got := readFile(t, m, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	checkMode(t, m, "db-password", 0o400)
	if _, err := m.File("payments/other"); err == nil {
		t.Error("a secret without the tag is mounted")
	}
	syncedPassword := func(want string) func(context.Context) error {
		return func(ctx context.Context) error {
			s, err := framework.GetSecret(ctx, e.Kube, ns, "app-db")
			if err != nil {
				return err
			}
			if v, _ := s.Value("password"); v != want {
				return fmt.Errorf("synced password = %q", v)
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, "Secret app-db from the JSON member", syncedPassword(pw1))

	// A new tagged secret appears in the running pod's volume.
	start := time.Now()
	if _, err := e.Emulator.AddSecret(vault, "pay-new", emulator.SecretVersion{Value: "e2e-pay-new", Tags: tagged}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the new tagged secret in the volume", func(context.Context) error {
		got, err := m.File("payments/pay-new")
		if err != nil {
			return fmt.Errorf("payments/pay-new: %w", err)
		}
		if got != "e2e-pay-new" {
			return fmt.Errorf("payments/pay-new = %q", got)
		}
		return nil
	})
	t.Logf("new tagged secret mounted %s after it was added", time.Since(start).Round(time.Millisecond))

	// A changed JSON member is rewritten, in the file and in the synced Secret.
	start = time.Now()
	if _, err := e.Emulator.AddSecretVersion(vault, "app-config", `{"db": {"user": "app", "password": "`+pw2+`"}}`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the rewritten JSON member", func(context.Context) error {
		if got, _ := m.File("db-password"); got != pw2 {
			return fmt.Errorf("db-password = %q", got)
		}
		return nil
	})
	t.Logf("JSON member rotated %s after the new version", time.Since(start).Round(time.Millisecond))
	eventually(t, 30*time.Second, "Secret app-db follows the JSON member", syncedPassword(pw2))
	eventually(t, 30*time.Second, "pod status versions", func(ctx context.Context) error {
		vers, _, err := podStatusVersions(ctx, e, pod, spc)
		if err != nil {
			return err
		}
		if vers["secret/app-config"] != latestSecretVersion(t, e, "app-config") || vers["secret/pay-new"] == "" {
			return fmt.Errorf("pod status versions %v", vers)
		}
		return nil
	})
}
