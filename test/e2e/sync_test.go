//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestSyncToKubernetesSecrets: spec.secretObjects makes the driver create an Opaque Secret and
// a kubernetes.io/tls Secret from the files our provider returned.
func TestSyncToKubernetesSecrets(t *testing.T) {
	const ns, sa, spc = "sync", "workload", "kv-sync"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(subject(ns, sa))})
	ctx := e.Ctx
	e.Namespace(ns, sa, nil)
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc,
		Parameters: wiParams(wiClientID,
			obj{Name: "db-password", Type: "secret"},
			obj{Name: "api-key", Type: "secret"},
			obj{Name: "web-pem", Type: "secret", Alias: "tls-bundle"},
		),
		SecretObjects: []framework.Object{
			{"secretName": "db-creds", "type": "Opaque", "labels": map[string]string{"app": "db"},
				"data": []framework.Object{{"objectName": "db-password", "key": "password"}, {"objectName": "api-key", "key": "apikey"}}},
			{"secretName": "web-tls", "type": "kubernetes.io/tls",
				"data": []framework.Object{{"objectName": "tls-bundle", "key": "tls.key"}, {"objectName": "tls-bundle", "key": "tls.crt"}}},
		},
	})
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app", ServiceAccount: sa, SPC: spc})
	if _, err := e.Kubelet.Publish(ctx, pod, ""); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	eventually(t, 30*time.Second, "Opaque secret db-creds", func(ctx context.Context) error {
		s, err := framework.GetSecret(ctx, e.Kube, ns, "db-creds")
		if err != nil {
			return err
		}
		if s.Type != "Opaque" || s.Metadata.Labels["app"] != "db" || s.Metadata.Labels["secrets-store.csi.k8s.io/managed"] != "true" {
			return fmt.Errorf("type %q labels %v", s.Type, s.Metadata.Labels)
		}
		if v, _ := s.Value("password"); v != dbPasswordV1 {
			return fmt.Errorf("password = %q", v)
		}
		if v, _ := s.Value("apikey"); v != "ak-2" {
			return fmt.Errorf("apikey = %q", v)
		}
		return nil
	})
	eventually(t, 30*time.Second, "TLS secret web-tls", func(ctx context.Context) error {
		s, err := framework.GetSecret(ctx, e.Kube, ns, "web-tls")
		if err != nil {
			return err
		}
		if s.Type != "kubernetes.io/tls" {
			return fmt.Errorf("type %q", s.Type)
		}
		crt, err := s.Value("tls.crt")
		if err != nil {
			return err
		}
		key, err := s.Value("tls.key")
		if err != nil {
			return err
		}
		pair, err := tls.X509KeyPair([]byte(crt), []byte(key))
		if err != nil {
			return fmt.Errorf("tls.crt and tls.key do not form a key pair: %w", err)
		}
		if len(pair.Certificate) != 3 {
			return fmt.Errorf("tls.crt has %d certificates, want leaf, intermediate and root", len(pair.Certificate))
		}
		checkChain(t, "web-tls tls.crt", pemBlocks(t, crt), "web-pem.e2e.test", 3)
		return nil
	})
	// The synced secrets are owned by the pod status, so they go away with the pod.
	eventually(t, 30*time.Second, "owner reference", func(ctx context.Context) error {
		s, err := framework.GetSecret(ctx, e.Kube, ns, "db-creds")
		if err != nil {
			return err
		}
		for _, o := range s.Metadata.OwnerReferences {
			if o.Kind == "SecretProviderClassPodStatus" && o.Name == pod.Name+"-"+ns+"-"+spc {
				return nil
			}
		}
		return fmt.Errorf("owner references %v", s.Metadata.OwnerReferences)
	})
}
