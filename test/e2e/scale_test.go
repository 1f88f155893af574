//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestFiftyPodsShareOneSPC: 50 pods of one Deployment (one service account, one SPC) mount on
// the node, ten at a time as kubelet's volume manager would. Every pod gets its own bound token,
// which the provider exchanges at Entra ID exactly once (the proof that the pod is this identity:
// see README "Authentication"); the identity's reads are shared: Key Vault GETs << pods.
func TestFiftyPodsShareOneSPC(t *testing.T) {
	const ns, sa, spc, pods, parallel = "scale", "workload", "kv-scale", 50, 10
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(subject(ns, sa))})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc,
		Parameters: wiParams(wiClientID, obj{Name: "db-password", Type: "secret"}, obj{Name: "api-key", Type: "secret"})})

	// Without kube-controller-manager nothing turns a Deployment into pods, so the test creates
	// the Deployment, its ReplicaSet and the ReplicaSet's pods the way the controllers would.
	labels := map[string]string{"app": "web"}
	template := framework.Object{"metadata": framework.Object{"labels": labels}, "spec": framework.Object{
		"serviceAccountName": sa,
		"containers":         []framework.Object{{"name": "app", "image": "registry.k8s.io/pause:3.10"}},
	}}
	var dep, rs struct{ Metadata struct{ UID string } }
	if err := e.Kube.Create(ctx, "/apis/apps/v1/namespaces/"+ns+"/deployments", framework.Object{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": framework.Object{"name": "web", "namespace": ns},
		"spec": framework.Object{"replicas": pods, "selector": framework.Object{"matchLabels": labels}, "template": template},
	}, &dep); err != nil {
		t.Fatal(err)
	}
	if err := e.Kube.Create(ctx, "/apis/apps/v1/namespaces/"+ns+"/replicasets", framework.Object{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"metadata": framework.Object{"name": "web-5d4f8", "namespace": ns, "labels": labels, "ownerReferences": []framework.Object{{
			"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": dep.Metadata.UID, "controller": true}}},
		"spec": framework.Object{"replicas": pods, "selector": framework.Object{"matchLabels": labels}, "template": template},
	}, &rs); err != nil {
		t.Fatal(err)
	}
	owner := []framework.Object{{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f8", "uid": rs.Metadata.UID, "controller": true}}
	podList := make([]framework.Pod, pods)
	for i := range podList {
		podList[i] = e.Pod(framework.PodInput{Namespace: ns, Name: fmt.Sprintf("web-5d4f8-%05d", i), ServiceAccount: sa, SPC: spc,
			Labels: labels, OwnerReferences: owner})
	}

	e.Emulator.ResetCounters()
	start := time.Now()
	var (
		mu        sync.Mutex
		mounts    []*framework.Mount
		durations []time.Duration
		errs      []error
		wg        sync.WaitGroup
		sem       = make(chan struct{}, parallel)
	)
	for _, p := range podList {
		wg.Add(1)
		go func(p framework.Pod) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t0 := time.Now()
			m, err := e.Kubelet.Publish(ctx, p, "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
				return
			}
			mounts = append(mounts, m)
			durations = append(durations, time.Since(t0))
		}(p)
	}
	wg.Wait()
	total := time.Since(start)
	for _, err := range errs {
		t.Error(err)
	}
	if len(mounts) != pods {
		t.Fatalf("%d of %d pods mounted", len(mounts), pods)
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	t.Logf("%d mounts in %s (%d in parallel): p50 %s, p95 %s, max %s", pods, total.Round(time.Millisecond), parallel,
		durations[pods/2].Round(time.Millisecond), durations[pods*95/100].Round(time.Millisecond), durations[pods-1].Round(time.Millisecond))
	for _, m := range mounts {
		if got, err := m.File("db-password"); err != nil || got != dbPasswordV1 {
			t.Errorf("%s: db-password = %q, %v", m.Pod.Name, got, err)
		}
	}
	c := e.Emulator.Counters()
	t.Logf("counters after %d mounts: %+v", pods, c)
	if n := c.TokenRequestsByClient[wiClientID]; n != pods {
		t.Errorf("%d Entra token requests for %d pods of one identity, each with its own token; want %d (one exchange per new token)", n, pods, pods)
	}
	// The provider also shares one identity's successful reads for --result-cache-ttl (10 s by
	// default): replicas mounting together make one read per object, not one per pod.
	if n := c.KeyVaultGets["secret"]; n < 2 || n > 2*pods/5 {
		t.Errorf("%d secret GETs for %d pods x 2 objects; want 2..%d (reads shared per identity)", n, pods, 2*pods/5)
	}
	eventually(t, 30*time.Second, "pod statuses", func(ctx context.Context) error {
		var l struct{ Items []framework.PodStatus }
		if err := e.Kube.Get(ctx, "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/"+ns+"/secretproviderclasspodstatuses", &l); err != nil {
			return err
		}
		if len(l.Items) != pods {
			return fmt.Errorf("%d SecretProviderClassPodStatus objects, want %d", len(l.Items), pods)
		}
		return nil
	})
	start = time.Now()
	for _, m := range mounts {
		if err := e.Kubelet.Unpublish(ctx, m); err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d unmounts in %s", pods, time.Since(start).Round(time.Millisecond))
}
