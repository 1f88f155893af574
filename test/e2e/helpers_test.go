//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/test/e2e/framework"
)

const (
	tenantID = "8d7a7b3c-0a51-4c0e-9b55-6d6f0b1f2e01"
	vault    = "kv-e2e"
	// issuer is the apiserver's --service-account-issuer; federated credentials name it.
	issuer = "https://oidc.e2e.akv-csi.test"

	wiClientID     = "aaaaaaaa-0000-0000-0000-000000000001" // workload identity (federated)
	spClientID     = "aaaaaaaa-0000-0000-0000-000000000002" // service principal (client secret)
	spSecret       = "e2e-client-secret-value"              //nolint:gosec // seeded into the emulator
	miClientID     = "aaaaaaaa-0000-0000-0000-000000000003" // user-assigned managed identity
	deniedClientID = "aaaaaaaa-0000-0000-0000-000000000004" // federated, but no grant on secrets

	dbPasswordV1 = "e2e-db-password-v1" //nolint:gosec // seeded into the emulator
)

// obj is one entry of the SPC "objects" parameter.
type obj struct {
	Name, Type, Alias, Format, Encoding, Mode string
}

// objectsParam renders the objects parameter in Azure's format:
//
//	array:
//	  - |
//	    objectName: x
//	    objectType: secret
func objectsParam(objs ...obj) string {
	var b strings.Builder
	b.WriteString("array:\n")
	for _, o := range objs {
		b.WriteString("  - |\n")
		fmt.Fprintf(&b, "    objectName: %s\n", o.Name)
		fmt.Fprintf(&b, "    objectType: %s\n", o.Type)
		for k, v := range map[string]string{"objectAlias": o.Alias, "objectFormat": o.Format, "objectEncoding": o.Encoding} {
			if v != "" {
				fmt.Fprintf(&b, "    %s: %s\n", k, v)
			}
		}
		if o.Mode != "" {
			fmt.Fprintf(&b, "    filePermission: %q\n", o.Mode)
		}
	}
	return b.String()
}

// baseSeed is a vault with a secret, a key and two certificates, and one identity of each
// kind. Workload identities federate with the apiserver's issuer for subject
// system:serviceaccount:<ns>:<sa> of the given service accounts.
func baseSeed(federated ...string) *emulator.Seed {
	all := []string{"secret", "key", "certificate"}
	var fed []emulator.FederatedCredential
	var deniedFed []emulator.FederatedCredential
	for _, sub := range federated {
		fed = append(fed, emulator.FederatedCredential{Issuer: issuer, Subject: sub, Audience: framework.Audience})
		deniedFed = append(deniedFed, emulator.FederatedCredential{Issuer: issuer, Subject: sub, Audience: framework.Audience})
	}
	s := &emulator.Seed{
		TenantID: tenantID,
		Vaults: []emulator.Vault{{
			Name: vault,
			Secrets: []emulator.Secret{
				{Name: "db-password", Versions: []emulator.SecretVersion{{Value: dbPasswordV1, ContentType: "text/plain"}}},
				{Name: "api-key", Versions: []emulator.SecretVersion{{Value: "ak-1"}, {Value: "ak-2"}}},
			},
			Keys: []emulator.Key{{Name: "signing-rsa", Kty: "RSA", Size: 2048}},
			Certificates: []emulator.Certificate{
				{Name: "web-pem", ContentType: emulator.ContentTypePEM, KeyType: "EC", Subject: "web-pem.e2e.test"},
				{Name: "web-pfx", ContentType: emulator.ContentTypePKCS12, KeyType: "RSA", Subject: "web-pfx.e2e.test"},
				// Chains stored root first. Like Azure's provider, ours reorders a PKCS#12 chain leaf
				// to root (--construct-pem-chain, on by default) and writes a PEM one as stored.
				{Name: "pfx-rev", ContentType: emulator.ContentTypePKCS12, KeyType: "RSA", Subject: "pfx-rev.e2e.test",
					Chain: []string{"root", "intermediate", "leaf"}},
				{Name: "pem-rev", ContentType: emulator.ContentTypePEM, KeyType: "RSA", Subject: "pem-rev.e2e.test",
					Chain: []string{"root", "intermediate", "leaf"}},
			},
		}},
		ServicePrincipals: []emulator.ServicePrincipal{
			{ClientID: spClientID, Secrets: []string{spSecret}},
		},
		ManagedIdentities: []emulator.ManagedIdentity{{ClientID: miClientID}},
		Grants: []emulator.Grant{
			{Identity: spClientID, Vault: vault, Types: all},
			{Identity: miClientID, Vault: vault, Types: all},
			{Identity: deniedClientID, Vault: vault, Types: []string{"key"}},
		},
	}
	if len(fed) > 0 {
		s.ServicePrincipals = append(s.ServicePrincipals,
			emulator.ServicePrincipal{ClientID: wiClientID, Federated: fed},
			emulator.ServicePrincipal{ClientID: deniedClientID, Federated: deniedFed})
		s.Grants = append(s.Grants, emulator.Grant{Identity: wiClientID, Vault: vault, Types: all})
	}
	return s
}

func subject(ns, sa string) string { return "system:serviceaccount:" + ns + ":" + sa }

// wiParams are SPC parameters for workload identity.
func wiParams(clientID string, objs ...obj) map[string]string {
	return map[string]string{"keyvaultName": vault, "tenantId": tenantID, "clientID": clientID, "objects": objectsParam(objs...)}
}

// readFile reads a mounted file, failing the test if it is missing.
func readFile(t *testing.T, m *framework.Mount, name string) string {
	t.Helper()
	s, err := m.File(name)
	if err != nil {
		t.Fatalf("mounted file %s: %v", name, err)
	}
	return s
}

// checkMode checks the permission bits of a mounted file (through the driver's ..data link).
func checkMode(t *testing.T, m *framework.Mount, name string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(filepath.Join(m.TargetPath, name))
	if err != nil {
		t.Fatalf("stat %s: %v", name, err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %#o, want %#o", name, got, want)
	}
}

// pemBlocks splits PEM data into blocks; trailing non-PEM data fails the test.
func pemBlocks(t *testing.T, data string) []*pem.Block {
	t.Helper()
	var out []*pem.Block
	rest := []byte(data)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		out = append(out, b)
	}
	if strings.TrimSpace(string(rest)) != "" {
		t.Errorf("non-PEM data after %d blocks: %.40q", len(out), rest)
	}
	return out
}

// checkChain checks that certs are leaf first, each issued by the next, and the leaf has cn.
func checkChain(t *testing.T, what string, blocks []*pem.Block, cn string, wantCerts int) {
	t.Helper()
	var certs []*x509.Certificate
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: parse certificate: %v", what, err)
		}
		certs = append(certs, c)
	}
	if len(certs) != wantCerts {
		t.Fatalf("%s: %d certificates, want %d", what, len(certs), wantCerts)
	}
	if certs[0].Subject.CommonName != cn {
		t.Errorf("%s: first certificate is %q, want the leaf %q", what, certs[0].Subject.CommonName, cn)
	}
	for i := 0; i+1 < len(certs); i++ {
		if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
			t.Errorf("%s: certificate %d (%q) is not signed by certificate %d (%q): order is not leaf to root: %v",
				what, i, certs[i].Subject.CommonName, i+1, certs[i+1].Subject.CommonName, err)
		}
	}
}

// eventually polls f until it returns nil or timeout passes, then fails with its last error.
func eventually(t *testing.T, timeout time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	err := framework.WaitFor(context.Background(), timeout, what, func(ctx context.Context) (bool, error) {
		err := f(ctx)
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// podStatusVersions returns the object versions of a SecretProviderClassPodStatus by ID.
func podStatusVersions(ctx context.Context, e *framework.Env, pod framework.Pod, spc string) (map[string]string, bool, error) {
	st, err := framework.GetPodStatus(ctx, e.Kube, pod.Namespace, pod.Name, spc)
	if err != nil {
		return nil, false, err
	}
	out := map[string]string{}
	for _, o := range st.Status.Objects {
		out[o.ID] = o.Version
	}
	return out, st.Status.Mounted, nil
}

func latestSecretVersion(t *testing.T, e *framework.Env, name string) string {
	t.Helper()
	vs := e.Emulator.SecretVersions(vault, name)
	if len(vs) == 0 {
		t.Fatalf("emulator has no versions of secret %s", name)
	}
	return vs[len(vs)-1].Version
}

// waitRotated waits until the synced Secret db-creds holds value and the pod's
// SecretProviderClassPodStatus reports version for secret/db-password.
func waitRotated(t *testing.T, e *framework.Env, pod framework.Pod, spc, ns, value, version string) {
	t.Helper()
	eventually(t, 30*time.Second, "rotated Secret and pod status", func(ctx context.Context) error {
		s, err := framework.GetSecret(ctx, e.Kube, ns, "db-creds")
		if err != nil {
			return err
		}
		if v, _ := s.Value("password"); v != value {
			return fmt.Errorf("synced password = %q", v)
		}
		vers, _, err := podStatusVersions(ctx, e, pod, spc)
		if err != nil {
			return err
		}
		if vers["secret/db-password"] != version {
			return fmt.Errorf("pod status version %q, want %q", vers["secret/db-password"], version)
		}
		return nil
	})
}
