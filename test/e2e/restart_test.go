//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestProviderRestart: the provider crashes and comes back on the same socket between two
// mounts; the driver reconnects (kubelet retries NodePublishVolume as it does on failure), and
// the first pod's files are untouched.
func TestProviderRestart(t *testing.T) {
	const ns, sa, spc = "restart", "workload", "kv-restart"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(subject(ns, sa))})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc,
		Parameters: wiParams(wiClientID, obj{Name: "db-password", Type: "secret"})})
	podA := e.Pod(framework.PodInput{Namespace: ns, Name: "a", ServiceAccount: sa, SPC: spc})
	podB := e.Pod(framework.PodInput{Namespace: ns, Name: "b", ServiceAccount: sa, SPC: spc})
	mA, err := e.Kubelet.Publish(ctx, podA, "")
	if err != nil {
		t.Fatalf("NodePublishVolume a: %v", err)
	}
	oldPid := e.Provider.Process.Pid()
	e.Provider.Restart(true)
	if e.Provider.Process.Pid() == oldPid {
		t.Fatal("provider was not restarted")
	}
	start := time.Now()
	var mB *framework.Mount
	attempts := 0
	eventually(t, 60*time.Second, "mount after provider restart", func(ctx context.Context) error {
		attempts++
		m, err := e.Kubelet.Publish(ctx, podB, "")
		if err != nil {
			return err
		}
		mB = m
		return nil
	})
	t.Logf("mount after restart succeeded in %s after %d attempt(s)", time.Since(start).Round(time.Millisecond), attempts)
	for _, m := range []*framework.Mount{mA, mB} {
		if got := readFile(t, m, "db-password"); got != dbPasswordV1 {
			t.Errorf("%s: db-password = %q", m.Pod.Name, got)
		}
	}
}
