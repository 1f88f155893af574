package integration

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/provider"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// chainPEM is the expected PEM of a certificate's secret, computed from the emulator's material
// by subject/issuer names (not by the key IDs the provider uses): PKCS#8 key, then leaf →
// intermediate → root, or the stored order when the chain has a gap.
func chainPEM(t *testing.T, cm *emulator.CertMaterial) (key, certs []byte) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(cm.Key)
	if err != nil {
		t.Fatal(err)
	}
	ordered := []*x509.Certificate{cm.Leaf}
	for len(ordered) < len(cm.Chain) {
		last := ordered[len(ordered)-1]
		var next *x509.Certificate
		for _, c := range cm.Chain {
			if c != last && c.Subject.String() == last.Issuer.String() {
				next = c
			}
		}
		if next == nil {
			ordered = cm.Chain // incomplete: stored order
			break
		}
		ordered = append(ordered, next)
	}
	for _, c := range ordered {
		certs = append(certs, pemBlock("CERTIFICATE", c.Raw)...)
	}
	return pemBlock("PRIVATE KEY", der), certs
}

func publicKeyPEM(t *testing.T, name string) ([]byte, string) {
	t.Helper()
	pub, version, err := em.PublicKey(vault, name, "")
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PUBLIC KEY", der), version
}

func certMaterial(t *testing.T, name string) *emulator.CertMaterial {
	t.Helper()
	cm, err := em.Certificate(vault, name, "")
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// TestMountEveryObjectKind mounts every object type, format and encoding in one request with
// workload identity through the public cloud host names (the proxy route), and compares each file
// with bytes computed independently from the emulator's generated material.
func TestMountEveryObjectKind(t *testing.T) {
	c := startProvider(t, provider.Options{WriteCertAndKeyInSeparateFiles: true})
	resp, err := mount(t, c, mountRequest{token: wiToken(t, "default", "app-sa"), params: map[string]string{
		config.KeyVaultName: vault, config.TenantIDLegacy: tenant, config.ClientID: wiApp,
		config.Objects: objects(
			"objectName: db-pass\nobjectType: secret",
			"objectName: db-pass\nobjectType: secret\nobjectAlias: history\nobjectVersionHistory: 2",
			"objectName: db-pass\nobjectType: secret\nobjectAlias: pinned\nobjectVersion: 00000000000000000000000000000001\nfilePermission: \"0600\"",
			"objectName: b64\nobjectType: secret\nobjectEncoding: base64",
			"objectName: hexed\nobjectType: secret\nobjectEncoding: hex",
			"objectName: rsa\nobjectType: key",
			"objectName: rsa-hsm\nobjectType: key",
			"objectName: ec256\nobjectType: key",
			"objectName: ec384-hsm\nobjectType: key",
			"objectName: ec521\nobjectType: key\nobjectAlias: keys/ec521.pem",
			"objectName: web-pfx\nobjectType: cert\nobjectAlias: web.crt",
			"objectName: web-pfx\nobjectType: secret\nobjectAlias: web.pem",
			"objectName: web-pfx\nobjectType: secret\nobjectAlias: web.pfx\nobjectFormat: pfx\nobjectEncoding: base64",
			"objectName: web-pfx\nobjectType: secret\nobjectAlias: web.pfx.b64\nobjectFormat: pfx",
			"objectName: web-pem\nobjectType: secret",
			"objectName: web-partial\nobjectType: secret",
		),
	}})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	got := files(resp)

	pfx, pemCert, partial := certMaterial(t, "web-pfx"), certMaterial(t, "web-pem"), certMaterial(t, "web-partial")
	pfxKey, pfxCerts := chainPEM(t, pfx)
	_, partialCerts := chainPEM(t, partial)
	if len(partial.Chain) != 2 || !bytes.Equal(partialCerts, append(pemBlock("CERTIFICATE", partial.Chain[0].Raw), pemBlock("CERTIFICATE", partial.Chain[1].Raw)...)) {
		t.Fatal("test setup: the partial chain should be stored leaf, root")
	}
	pfxRaw, _ := base64.StdEncoding.DecodeString(pfx.SecretValue)
	rsaPEM, rsaVersion := publicKeyPEM(t, "rsa")
	rsaHSM, _ := publicKeyPEM(t, "rsa-hsm")
	ec256, _ := publicKeyPEM(t, "ec256")
	ec384, _ := publicKeyPEM(t, "ec384-hsm")
	ec521, _ := publicKeyPEM(t, "ec521")
	partialKey, _ := chainPEM(t, partial)

	want := map[string][]byte{
		"db-pass":         []byte(dbPass[3]),
		"history/0":       []byte(dbPass[3]),
		"history/1":       []byte(dbPass[1]), // version 3 is disabled
		"pinned":          []byte(dbPass[0]),
		"b64":             binary,
		"hexed":           binary,
		"rsa":             rsaPEM,
		"rsa-hsm":         rsaHSM,
		"ec256":           ec256,
		"ec384-hsm":       ec384,
		"keys/ec521.pem":  ec521,
		"web.crt":         pemBlock("CERTIFICATE", pfx.Leaf.Raw),
		"web.pem":         append(append([]byte{}, pfxKey...), pfxCerts...),
		"web.pem.key":     pfxKey,
		"web.pem.crt":     pfxCerts,
		"web.pfx":         pfxRaw,
		"web.pfx.b64":     []byte(pfx.SecretValue),
		"web-pem":         []byte(pemCert.SecretValue),
		"web-partial":     append(append([]byte{}, partialKey...), partialCerts...),
		"web-partial.key": partialKey,
		"web-partial.crt": partialCerts,
	}
	pemKey, pemCerts := splitPEM(t, pemCert.SecretValue)
	want["web-pem.key"], want["web-pem.crt"] = pemKey, pemCerts

	for path, w := range want {
		f, ok := got[path]
		if !ok {
			t.Errorf("no file %q", path)
			continue
		}
		if !bytes.Equal(f.GetContents(), w) {
			t.Errorf("file %q:\n got %q\nwant %q", path, f.GetContents(), w)
		}
		wantMode := int32(0o644)
		if path == "pinned" {
			wantMode = 0o600
		}
		if f.GetMode() != wantMode {
			t.Errorf("file %q mode %o, want %o", path, f.GetMode(), wantMode)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d files, want %d: %v", len(got), len(want), cmp.Diff(keys(want), keys(got)))
	}

	versions := map[string]string{}
	for _, v := range resp.GetObjectVersion() {
		if _, dup := versions[v.GetId()]; !dup { // the id is <type>/<name>, shared by aliases of one object
			versions[v.GetId()] = v.GetVersion()
		}
	}
	for id, v := range map[string]string{
		"secret/db-pass":   "00000000000000000000000000000004",
		"secret/db-pass/0": "00000000000000000000000000000004",
		"secret/db-pass/1": "00000000000000000000000000000002",
		"key/rsa":          rsaVersion,
		"cert/web-pfx":     pfx.Version,
		"secret/web-pfx":   pfx.Version,
	} {
		if versions[id] != v {
			t.Errorf("object version %q = %q, want %q", id, versions[id], v)
		}
	}
	// One ObjectVersion per file, as Azure's provider reports them.
	if len(resp.GetObjectVersion()) != len(resp.GetFiles()) {
		t.Errorf("%d object versions for %d files, want one per file", len(resp.GetObjectVersion()), len(resp.GetFiles()))
	}
	perID := map[string]int{}
	for _, v := range resp.GetObjectVersion() {
		perID[v.GetId()]++
	}
	// web-pfx as a secret: web.pem with web.pem.crt and web.pem.key (3), web.pfx, web.pfx.b64, web-partial is another name.
	if perID["secret/web-pfx"] != 5 || perID["cert/web-pfx"] != 1 || perID["secret/db-pass"] != 2 {
		t.Errorf("object versions per id: %v; want secret/web-pfx 5 (web.pem, .crt, .key, web.pfx, web.pfx.b64), cert/web-pfx 1, secret/db-pass 2", perID)
	}
}

func splitPEM(t *testing.T, s string) (keys, certs []byte) {
	t.Helper()
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return keys, certs
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(b)...)
		} else {
			keys = append(keys, pem.EncodeToMemory(b)...)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestAuthModes mounts with each identity mode, through the proxy route with the public cloud's
// host names and through the AzureStackCloud route with the emulator's cloud file.
func TestAuthModes(t *testing.T) {
	cloudFile := filepath.Join(t.TempDir(), "cloud.json")
	if err := em.WriteCloudEnv(cloudFile); err != nil {
		t.Fatal(err)
	}
	stack := map[string]string{config.CloudName: "AzureStackCloud", config.CloudEnvFileName: cloudFile}
	modes := []struct {
		name    string
		req     func(t *testing.T) mountRequest
		cloudOK bool
	}{
		{"workload identity", func(t *testing.T) mountRequest {
			return mountRequest{token: wiToken(t, "default", "app-sa"), params: map[string]string{config.ClientID: wiApp}}
		}, true},
		{"service principal", func(*testing.T) mountRequest {
			return mountRequest{secrets: map[string]string{"clientid": spOK, "clientsecret": spSecret}}
		}, true},
		{"system-assigned managed identity", func(*testing.T) mountRequest {
			return mountRequest{params: map[string]string{config.UseVMManagedIdentity: "true"}}
		}, true},
		{"user-assigned managed identity", func(*testing.T) mountRequest {
			return mountRequest{params: map[string]string{config.UseVMManagedIdentity: "true", config.UserAssignedIdentityID: miUser}}
		}, true},
	}
	for _, route := range []struct {
		name   string
		params map[string]string
	}{{"public cloud via proxy", nil}, {"AzureStackCloud file", stack}} {
		for _, m := range modes {
			t.Run(route.name+"/"+m.name, func(t *testing.T) {
				c := startProvider(t, provider.Options{})
				r := m.req(t)
				if r.params == nil {
					r.params = map[string]string{}
				}
				r.params[config.KeyVaultName] = vault
				r.params[config.TenantID] = tenant
				r.params[config.Objects] = objects("objectName: plain\nobjectType: secret")
				for k, v := range route.params {
					r.params[k] = v
				}
				resp := mustMount(t, c, r)
				if f := files(resp)["plain"]; f == nil || string(f.GetContents()) != plainValue {
					t.Errorf("files = %v", resp.GetFiles())
				}
			})
		}
	}
}

// TestVersion answers the driver's version call.
func TestVersion(t *testing.T) {
	c := startProvider(t, provider.Options{})
	v, err := c.Version(context.Background(), &v1alpha1.VersionRequest{Version: "v1alpha1"})
	if err != nil || v.GetVersion() != "v1alpha1" || v.GetRuntimeName() == "" {
		t.Errorf("Version = %v, %v", v, err)
	}
}

// TestMountErrors checks the gRPC code of each error class, that the message names the object and
// carries the hint, and that no secret material is in it.
func TestMountErrors(t *testing.T) {
	base := func(extra map[string]string, objs ...string) map[string]string {
		p := map[string]string{config.KeyVaultName: vault, config.TenantID: tenant, config.Objects: objects(objs...)}
		for k, v := range extra {
			p[k] = v
		}
		return p
	}
	sp := func(id, secret string) map[string]string {
		return map[string]string{"clientid": id, "clientsecret": secret}
	}
	plain := "objectName: plain\nobjectType: secret"
	tests := []struct {
		name string
		req  func(t *testing.T) mountRequest
		code codes.Code
		want []string
	}{
		{"invalid parameters", func(*testing.T) mountRequest {
			return mountRequest{params: base(map[string]string{config.UsePodIdentity: "true"}, "objectName: x\nobjectType: blob"), secrets: sp(spOK, spSecret)}
		}, codes.InvalidArgument, []string{"usePodIdentity is not supported", `objects[0] ("x"): objectType "blob"`}},
		{"no workload identity token", func(*testing.T) mountRequest {
			return mountRequest{params: base(map[string]string{config.ClientID: wiApp}, plain)}
		}, codes.InvalidArgument, []string{"tokenRequests"}},
		{"wrong client secret", func(*testing.T) mountRequest {
			return mountRequest{params: base(nil, plain), secrets: sp(spOK, "wrong")}
		}, codes.Unauthenticated, []string{"AADSTS7000215", `mount vault "kv-int"`, "clientsecret in the nodePublishSecretRef Secret is wrong or expired"}},
		{"unknown application", func(*testing.T) mountRequest {
			return mountRequest{params: base(nil, plain), secrets: sp("5b0a0000-0000-4000-8000-00000000dead", spSecret)}
		}, codes.Unauthenticated, []string{"AADSTS700016", "was not found in tenant " + tenant}},
		{"no federated credential for the service account", func(t *testing.T) mountRequest {
			return mountRequest{token: wiToken(t, "other-ns", "intruder"), params: base(map[string]string{
				config.ClientID: wiApp, config.PodNamespace: "other-ns", config.ServiceAccountName: "intruder"}, plain)}
		}, codes.Unauthenticated, []string{"AADSTS70021", `issuer "` + emulator.BuiltinIssuer + `"`, `subject "system:serviceaccount:other-ns:intruder"`}},
		{"managed identity not on the node", func(*testing.T) mountRequest {
			return mountRequest{params: base(map[string]string{config.UseVMManagedIdentity: "true", config.UserAssignedIdentityID: "5b0a0000-0000-4000-8000-0000000000ff"}, plain)}
		}, codes.Unauthenticated, []string{"no user-assigned managed identity with client ID 5b0a0000-0000-4000-8000-0000000000ff"}},
		{"secret denied", func(*testing.T) mountRequest {
			return mountRequest{params: base(nil, plain), secrets: sp(spDenied, spSecret)}
		}, codes.PermissionDenied, []string{`get secret "plain" (version latest) in vault "kv-int": 403`, `"Key Vault Secrets User" role`, spDenied}},
		{"key and cert denied", func(*testing.T) mountRequest {
			return mountRequest{params: base(map[string]string{config.UseVMManagedIdentity: "true", config.UserAssignedIdentityID: miUser},
				"objectName: rsa\nobjectType: key", "objectName: web-pfx\nobjectType: cert", plain)}
		}, codes.PermissionDenied, []string{"2 of 3 objects failed", `"Key Vault Crypto User"`, `"Key Vault Certificate User"`}},
		{"missing object", func(*testing.T) mountRequest {
			return mountRequest{params: base(nil, plain, "objectName: nope\nobjectType: secret\nobjectVersion: abc123"), secrets: sp(spOK, spSecret)}
		}, codes.NotFound, []string{`get secret "nope" (version abc123) in vault "kv-int": 404 Not Found (SecretNotFound)`, "1 of 2 objects failed"}},
		{"unsupported key type", func(*testing.T) mountRequest {
			return mountRequest{params: base(nil, "objectName: sym\nobjectType: key"), secrets: sp(spOK, spSecret)}
		}, codes.InvalidArgument, []string{`key type "oct" has no public key`}},
		{"missing cloud file", func(*testing.T) mountRequest {
			return mountRequest{params: base(map[string]string{config.CloudName: "AzureStackCloud", config.CloudEnvFileName: "/nonexistent/cloud.json"}, plain), secrets: sp(spOK, spSecret)}
		}, codes.InvalidArgument, []string{`cloudEnvFileName "/nonexistent/cloud.json"`}},
	}
	c := startProvider(t, provider.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := mount(t, c, tt.req(t))
			if err == nil {
				t.Fatalf("Mount succeeded with %d files", len(resp.GetFiles()))
			}
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Errorf("code = %s, want %s (%s)", st.Code(), tt.code, st.Message())
			}
			for _, w := range tt.want {
				if !strings.Contains(st.Message(), w) {
					t.Errorf("message lacks %q:\n%s", w, st.Message())
				}
			}
			if leaked := leakedSecrets(st.Message()); len(leaked) > 0 {
				t.Errorf("message leaks %q", leaked)
			}
			if strings.Contains(st.Message(), "\n") || strings.Contains(st.Message(), "RESPONSE") {
				t.Errorf("message carries an SDK dump:\n%s", st.Message())
			}
		})
	}
}

// TestMountFaults covers Key Vault unavailability and the driver's deadline.
func TestMountFaults(t *testing.T) {
	c := startProvider(t, provider.Options{})
	req := mountRequest{
		params:  map[string]string{config.KeyVaultName: vault, config.TenantID: tenant, config.Objects: objects("objectName: plain\nobjectType: secret")},
		secrets: map[string]string{"clientid": spOK, "clientsecret": spSecret},
	}
	if _, err := mount(t, c, req); err != nil { // warm up: token and challenge done
		t.Fatal(err)
	}
	t.Cleanup(func() { em.SetFaults(emulator.Faults{}) })

	em.SetFaults(emulator.Faults{Unavailable: 10})
	_, err := mount(t, c, req)
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "503") || !strings.Contains(st.Message(), "check that the node can reach Key Vault") {
		t.Errorf("503s: %v", err)
	}

	// The provider answers before the driver's deadline with its own message: a status the
	// client made up from its expired context ("context deadline exceeded") fails this.
	em.SetFaults(emulator.Faults{KeyVaultLatency: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.Mount(ctx, req.build(t))
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || ctx.Err() != nil ||
		!strings.Contains(st.Message(), `secret "plain"`) || !strings.Contains(st.Message(), "did not answer in time") {
		t.Errorf("slow vault: want the provider's DeadlineExceeded naming the object before the client's deadline; got %v (client context: %v)", err, ctx.Err())
	}

	em.SetFaults(emulator.Faults{Throttle: 1, ThrottleRetryAfter: "0"})
	if _, err := mount(t, c, req); err != nil {
		t.Errorf("one 429 then success should mount: %v", err)
	}
}

// TestWarmMountReusesIdentity shows that a second mount of the same identity makes no token,
// discovery or challenge request, and exactly one Key Vault GET per object.
func TestWarmMountReusesIdentity(t *testing.T) {
	c := startProvider(t, provider.Options{})
	req := mountRequest{token: wiToken(t, "default", "app-sa"), params: map[string]string{
		config.KeyVaultName: vault, config.TenantID: tenant, config.ClientID: wiApp,
		config.Objects: objects("objectName: plain\nobjectType: secret", "objectName: b64\nobjectType: secret", "objectName: hexed\nobjectType: secret",
			"objectName: db-pass\nobjectType: secret", "objectName: rsa\nobjectType: key", "objectName: web-pfx\nobjectType: cert"),
	}}
	em.ResetCounters()
	if _, err := mount(t, c, req); err != nil {
		t.Fatal(err)
	}
	cold := em.Counters()
	if cold.TokenRequests != 1 {
		t.Errorf("a cold mount made %d token requests, want 1", cold.TokenRequests)
	}
	// One challenge per SDK client (secrets, keys, certificates), not one per concurrent first read.
	if cold.Challenges != 3 {
		t.Errorf("a cold mount of 4 secrets, 1 key and 1 certificate answered %d challenges, want 3", cold.Challenges)
	}
	em.ResetCounters()
	// The kubelet sends a pod the same token until it is 80% through its lifetime.
	if _, err := mount(t, c, req); err != nil {
		t.Fatal(err)
	}
	warm := em.Counters()
	if warm.TokenRequests != 0 || warm.DiscoveryRequests != 0 || warm.Challenges != 0 {
		t.Errorf("warm mount: %d token, %d discovery, %d challenge requests; want 0", warm.TokenRequests, warm.DiscoveryRequests, warm.Challenges)
	}
	if diff := cmp.Diff(map[string]int64{"secret": 4, "key": 1, "certificate": 1}, warm.KeyVaultGets); diff != "" {
		t.Errorf("warm Key Vault GETs (-want +got):\n%s", diff)
	}
}
