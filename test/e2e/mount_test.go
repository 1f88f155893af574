//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/akv-csi/provider/test/e2e/framework"
)

// TestMountWorkloadIdentity mounts secrets, a key and certificates with workload identity: the
// kubelet simulation gets a real apiserver token for api://AzureADTokenExchange, the driver
// passes it to our provider, and the emulator accepts it only because it verifies it against the
// apiserver's service-account key (federated credential on issuer + subject).
func TestMountWorkloadIdentity(t *testing.T) {
	const ns, sa, spc = "wi", "workload", "kv-objects"
	e := framework.NewEnv(t, framework.EnvInput{Issuer: issuer, Seed: baseSeed(subject(ns, sa))})
	ctx := e.Ctx
	e.Namespace(ns, sa, map[string]string{"azure.workload.identity/client-id": wiClientID})
	objects := []obj{
		{Name: "db-password", Type: "secret"},
		{Name: "api-key", Type: "secret", Alias: "api-key.txt", Mode: "0600"},
		{Name: "signing-rsa", Type: "key"},
		{Name: "web-pem", Type: "cert"},
		{Name: "web-pem", Type: "secret", Alias: "web-pem-bundle.pem"},
		{Name: "web-pfx", Type: "secret", Alias: "web-pfx-bundle.pem"},
		{Name: "pfx-rev", Type: "secret", Alias: "pfx-rev-bundle.pem"},
		{Name: "pem-rev", Type: "secret", Alias: "pem-rev-bundle.pem"},
	}
	framework.CreateSecretProviderClass(ctx, t, e.Kube, framework.SPCInput{Namespace: ns, Name: spc, Parameters: wiParams(wiClientID, objects...)})
	pod := e.Pod(framework.PodInput{Namespace: ns, Name: "app", ServiceAccount: sa, SPC: spc})
	e.Emulator.ResetCounters()

	start := time.Now()
	m, err := e.Kubelet.Publish(ctx, pod, "")
	if err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	t.Logf("NodePublishVolume took %s", time.Since(start).Round(time.Millisecond))

	// Files and modes.
	if got := readFile(t, m, "db-password"); got != dbPasswordV1 {
		t.Errorf("db-password = %q, want %q", got, dbPasswordV1)
	}
	checkMode(t, m, "db-password", 0o644)
	if got := readFile(t, m, "api-key.txt"); got != "ak-2" {
		t.Errorf("api-key.txt = %q, want the latest version ak-2", got)
	}
	checkMode(t, m, "api-key.txt", 0o600)
	if _, err := os.Stat(m.TargetPath + "/api-key"); err == nil {
		t.Errorf("api-key written under its object name although it has an alias")
	}

	keyBlocks := pemBlocks(t, readFile(t, m, "signing-rsa"))
	if len(keyBlocks) != 1 || !strings.Contains(keyBlocks[0].Type, "PUBLIC KEY") {
		t.Fatalf("signing-rsa: want one PUBLIC KEY block, got %d blocks", len(keyBlocks))
	}
	wantPub, _, err := e.Emulator.PublicKey(vault, "signing-rsa", "")
	if err != nil {
		t.Fatal(err)
	}
	wantDER, err := x509.MarshalPKIXPublicKey(wantPub)
	if err != nil {
		t.Fatalf("marshal the vault's key (%T): %v", wantPub, err)
	}
	if !bytes.Equal(keyBlocks[0].Bytes, wantDER) {
		got, perr := x509.ParsePKIXPublicKey(keyBlocks[0].Bytes)
		t.Errorf("signing-rsa: public key differs from the vault's key (file %q block parses as %T, %v; vault key %T)",
			keyBlocks[0].Type, got, perr, wantPub)
	}

	certBlocks := pemBlocks(t, readFile(t, m, "web-pem"))
	checkChain(t, "web-pem (objectType cert)", certBlocks, "web-pem.e2e.test", 1)
	for _, c := range []struct{ file, cn string }{
		{"web-pem-bundle.pem", "web-pem.e2e.test"},
		{"web-pfx-bundle.pem", "web-pfx.e2e.test"},
		{"pfx-rev-bundle.pem", "pfx-rev.e2e.test"},
	} {
		blocks := pemBlocks(t, readFile(t, m, c.file))
		if len(blocks) == 0 || !strings.Contains(blocks[0].Type, "PRIVATE KEY") {
			t.Errorf("%s: first PEM block should be the private key", c.file)
		}
		checkChain(t, c.file, blocks, c.cn, 3)
	}

	// A PEM certificate's secret is written as stored (Azure-compatible): key, root,
	// intermediate, leaf.
	var subjects []string
	for _, b := range pemBlocks(t, readFile(t, m, "pem-rev-bundle.pem")) {
		if b.Type != "CERTIFICATE" {
			subjects = append(subjects, b.Type)
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		subjects = append(subjects, c.Subject.CommonName)
	}
	if len(subjects) != 4 || !strings.Contains(subjects[0], "PRIVATE KEY") || subjects[3] != "pem-rev.e2e.test" {
		t.Errorf("pem-rev-bundle.pem: blocks %q, want the key then the chain as stored (root, intermediate, leaf)", subjects)
	}

	// Kubernetes objects: the pod status lists every object with the vault's version.
	eventually(t, 30*time.Second, "SecretProviderClassPodStatus", func(ctx context.Context) error {
		v, mounted, err := podStatusVersions(ctx, e, pod, spc)
		if err != nil {
			return err
		}
		if !mounted {
			return fmt.Errorf("status.mounted is false")
		}
		if want := latestSecretVersion(t, e, "db-password"); v["secret/db-password"] != want {
			return fmt.Errorf("secret/db-password version %q, want %q (all: %v)", v["secret/db-password"], want, v)
		}
		for _, id := range []string{"key/signing-rsa", "cert/web-pem"} {
			if v[id] == "" {
				return fmt.Errorf("no version for %s in %v", id, v)
			}
		}
		return nil
	})

	// Emulator counters: the provider exchanged the apiserver token for client wiClientID and
	// read each object once: one GET per object of the SecretProviderClass, on the endpoint of its
	// type (a certificate's secret is a secret GET), and no version list (no
	// objectVersionHistory). One mount, with no rotation and no retry, so exactly that.
	wantGets := map[string]int64{}
	for _, o := range objects {
		endpoint := map[string]string{"secret": "secret", "key": "key", "cert": "certificate"}[o.Type]
		if endpoint == "" {
			t.Fatalf("object %s has type %q: add its Key Vault endpoint here", o.Name, o.Type)
		}
		wantGets[endpoint]++
	}
	c := e.Emulator.Counters()
	t.Logf("counters: %+v", c)
	if c.TokenRequestsByClient[wiClientID] < 1 {
		t.Errorf("no token request for the workload identity %s: %v", wiClientID, c.TokenRequestsByClient)
	}
	if len(c.TokenRequestsByClient) != 1 {
		t.Errorf("token requests for other clients than %s: %v", wiClientID, c.TokenRequestsByClient)
	}
	if diff := cmp.Diff(wantGets, c.KeyVaultGets, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Key Vault GETs by type for %d objects (-want +got):\n%s", len(objects), diff)
	}
	for typ, n := range c.KeyVaultLists {
		if n != 0 {
			t.Errorf("%d %s version lists, want none (no object sets objectVersionHistory): %v", n, typ, c.KeyVaultLists)
		}
	}

	if err := e.Kubelet.Unpublish(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.TargetPath); err == nil {
		if ents, _ := os.ReadDir(m.TargetPath); len(ents) > 0 {
			t.Errorf("target %s still has %d entries after unpublish", m.TargetPath, len(ents))
		}
	}
}
