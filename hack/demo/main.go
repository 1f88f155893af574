// Command demo shows a real mount on a machine with no Azure account: it starts the emulator with
// the sample vault and the provider binary, then calls Mount exactly as the Secrets Store CSI
// Driver does, with workload identity (a service account token this program signs for an issuer
// the emulator trusts), and prints what the driver would write.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/akv-csi/provider/hack/internal/harness"
	"github.com/akv-csi/provider/pkg/emulator"
)

const (
	issuer    = "https://oidc.demo-cluster.test"
	wiClient  = "22222222-2222-2222-2222-222222222222" // the sample seed's federated application
	miSystem  = "33333333-3333-3333-3333-333333333333" // the sample seed's system-assigned identity: secrets only
	namespace = "default"
	saName    = "demo-sa"
)

func main() {
	bin := flag.String("bin", "_output/bin", "folder with the provider and kv-emulator binaries")
	flag.Parse()
	if err := run(*bin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(bin string, out io.Writer) error {
	dir, err := os.MkdirTemp("", "akv-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The cluster's service account issuer: the demo owns its key, the emulator trusts its public half.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	seedFile, err := writeSeed(dir, &key.PublicKey)
	if err != nil {
		return err
	}

	emu, endpoints, err := harness.StartEmulator(dir, bin, seedFile)
	if err != nil {
		return err
	}
	defer emu.Stop()
	prov, err := harness.StartProvider(dir, bin, endpoints)
	if err != nil {
		return err
	}
	defer prov.Stop()
	client, socket := prov.Client, prov.Socket
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := client.Version(ctx, &v1alpha1.VersionRequest{Version: "v1alpha1"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "provider %s %s answers on %s\n", v.GetRuntimeName(), v.GetRuntimeVersion(), socket)

	token, err := signToken(key, "demo-app-0")
	if err != nil {
		return err
	}
	objects := []string{
		"objectName: db-password\nobjectType: secret",
		"objectName: db-password\nobjectType: secret\nobjectAlias: db-password-history\nobjectVersionHistory: 2",
		"objectName: api-key\nobjectType: secret\nfilePermission: \"0400\"",
		"objectName: signing-rsa\nobjectType: key\nobjectAlias: keys/signing-rsa.pub",
		"objectName: hsm-ec\nobjectType: key\nobjectAlias: keys/hsm-ec.pub",
		"objectName: web-tls\nobjectType: cert\nobjectAlias: tls/web.crt",
		"objectName: web-tls\nobjectType: secret\nobjectAlias: tls/web.pem",
		"objectName: web-tls\nobjectType: secret\nobjectAlias: tls/web.pfx\nobjectFormat: pfx\nobjectEncoding: base64",
	}
	req := harness.MountRequest(map[string]string{"keyvaultName": "kv-demo", "tenantId": endpoints.TenantID, "clientID": wiClient}, nil, token, objects)

	fmt.Fprintf(out, "\n== Mount: workload identity %s (service account %s/%s), vault kv-demo, %d objects\n", wiClient, namespace, saName, len(objects))
	start := time.Now()
	resp, err := client.Mount(ctx, req)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	cold := time.Since(start)
	printFiles(out, resp)

	counters := func() (c emulator.Counters, err error) {
		return c, harness.Admin(endpoints, http.MethodGet, "/admin/counters", nil, &c)
	}
	// measure mounts req and reports what it cost at the emulator.
	measure := func(title string, req *v1alpha1.MountRequest) error {
		before, err := counters()
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := client.Mount(ctx, req); err != nil {
			return fmt.Errorf("%s: %w", title, err)
		}
		took := time.Since(start)
		after, err := counters()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n== %s\n", title)
		fmt.Fprintf(out, "%v (first mount %v); %d token, %d discovery and %d challenge requests and %d Key Vault reads\n",
			took.Round(time.Millisecond), cold.Round(time.Millisecond), after.TokenRequests-before.TokenRequests,
			after.DiscoveryRequests-before.DiscoveryRequests, after.Challenges-before.Challenges,
			after.KeyVaultGetsTotal()-before.KeyVaultGetsTotal()+sum(after.KeyVaultLists)-sum(before.KeyVaultLists))
		return nil
	}
	token2, err := signToken(key, "demo-app-1")
	if err != nil {
		return err
	}
	replica := harness.MountRequest(map[string]string{"keyvaultName": "kv-demo", "tenantId": endpoints.TenantID, "clientID": wiClient}, nil, token2, objects)
	if err := measure("A second replica of the workload, with its own token, within --result-cache-ttl: its token is exchanged once (the proof that it is this identity), the reads are shared", replica); err != nil {
		return err
	}
	if err := measure("The first pod mounting again (the kubelet sends the same token until it nears expiry)", req); err != nil {
		return err
	}

	fmt.Fprintf(out, "\n== Object fields of our own: a member of a JSON secret, every secret tagged owner=demo, a certificate's metadata\n")
	own := harness.MountRequest(map[string]string{"keyvaultName": "kv-demo", "tenantId": endpoints.TenantID, "clientID": wiClient}, nil, token, []string{
		"objectName: app-config\nobjectType: secret\nobjectJSONKey: endpoint\nobjectAlias: config/endpoint",
		"objectTags: owner=demo\nobjectType: secret\nobjectAlias: by-tag",
		"objectName: web-tls\nobjectType: cert\nobjectFormat: metadata\nobjectAlias: tls/web.crt.json",
	})
	ownResp, err := client.Mount(ctx, own)
	if err != nil {
		return fmt.Errorf("mount with our own fields: %w", err)
	}
	printFiles(out, ownResp)
	for _, f := range ownResp.GetFiles() {
		if strings.HasSuffix(f.GetPath(), ".json") { // metadata: never a value, so shown in full
			fmt.Fprintf(out, "%s:\n%s", f.GetPath(), f.GetContents())
		}
	}

	fmt.Fprintf(out, "\n== A mount the vault refuses: the node's managed identity may read secrets only\n")
	denied := harness.MountRequest(map[string]string{"keyvaultName": "kv-demo", "tenantId": endpoints.TenantID, "useVMManagedIdentity": "true"}, nil, "",
		[]string{"objectName: db-password\nobjectType: secret", "objectName: signing-rsa\nobjectType: key"})
	_, err = client.Mount(ctx, denied)
	if err == nil {
		return errors.New("the denied mount succeeded")
	}
	st := status.Convert(err)
	fmt.Fprintf(out, "gRPC %s: %s\n", st.Code(), st.Message())
	fmt.Fprintf(out, "\nDemo complete: files above are what the driver writes into the pod's volume. Cleaning up.\n")
	return nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// writeSeed is the built-in sample vault plus the demo cluster's issuer as a trusted federation source.
func writeSeed(dir string, pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	keyFile := filepath.Join(dir, "issuer.pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	seed := emulator.SampleSeed()
	seed.Issuers = append(seed.Issuers, emulator.Issuer{URL: issuer, PublicKeyFile: keyFile})
	for i := range seed.ServicePrincipals {
		if seed.ServicePrincipals[i].ClientID == wiClient {
			seed.ServicePrincipals[i].Federated = append(seed.ServicePrincipals[i].Federated, emulator.FederatedCredential{
				Issuer: issuer, Subject: "system:serviceaccount:" + namespace + ":" + saName, Audience: "api://AzureADTokenExchange",
			})
		}
	}
	data, err := yaml.Marshal(seed)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "seed.yaml")
	return path, os.WriteFile(path, data, 0o600)
}

// signToken is what the kube-apiserver's TokenRequest returns for a pod of the service account
// (each pod's token differs: the kubelet requests one per pod).
func signToken(key *rsa.PrivateKey, pod string) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": issuer, "sub": "system:serviceaccount:" + namespace + ":" + saName, "aud": []string{"api://AzureADTokenExchange"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": pod,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = "demo"
	return t.SignedString(key)
}

// printFiles lists every file, and shows what is not secret: certificate subjects and chain
// order, and public keys. Secret values are never printed.
func printFiles(out io.Writer, resp *v1alpha1.MountResponse) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FILE\tMODE\tSIZE\tCONTENT")
	for _, f := range resp.GetFiles() {
		fmt.Fprintf(w, "%s\t%04o\t%d\t%s\n", f.GetPath(), f.GetMode(), len(f.GetContents()), describe(f.GetContents()))
	}
	w.Flush()
	fmt.Fprintln(out, "\nObject versions reported to the driver:")
	for _, v := range resp.GetObjectVersion() {
		fmt.Fprintf(out, "  %-28s %s\n", v.GetId(), v.GetVersion())
	}
}

func describe(data []byte) string {
	var parts []string
	rest := data
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		switch block.Type {
		case "CERTIFICATE":
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				parts = append(parts, fmt.Sprintf("cert CN=%s (issuer CN=%s)", c.Subject.CommonName, c.Issuer.CommonName))
			}
		case "PUBLIC KEY":
			if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
				sum := sha256.Sum256(block.Bytes)
				parts = append(parts, fmt.Sprintf("%s public key, SHA-256 %s…", keyKind(k), hex.EncodeToString(sum[:8])))
			}
		case "PRIVATE KEY":
			parts = append(parts, "private key (hidden)")
		}
	}
	if len(parts) == 0 && bytes.HasPrefix(data, []byte("{\n  \"name\": ")) {
		return "metadata JSON (below; never a value)"
	}
	if len(parts) == 0 {
		return "secret value (hidden)"
	}
	return strings.Join(parts, " → ")
}

func keyKind(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", k)
}
