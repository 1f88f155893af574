package emulator

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"software.sslmate.com/src/go-pkcs12"
)

var ctx = context.Background()

// Wire §2: one challenge per client, then the cached token; exact header.
func TestChallengeOncePerClientThenCachedToken(t *testing.T) {
	t.Parallel()
	e := start(t, &Seed{TenantID: tenant1, Vaults: []Vault{{Name: "kv-x", Secrets: []Secret{{Name: "a", Versions: []SecretVersion{{Value: "1"}}}}}},
		ServicePrincipals: []ServicePrincipal{{ClientID: spSec, Secrets: []string{spSecret}}},
		Grants:            []Grant{{Identity: spSec, Vault: "kv-x"}}})
	hc := httpClient(t, e)

	raw := do(t, hc, "GET", publicVault("kv-x")+"/secrets/a/?api-version=2026-04-01", "", nil, nil)
	if raw.status != 401 {
		t.Fatalf("status %d, want 401", raw.status)
	}
	wantHdr := `Bearer authorization="https://login.microsoftonline.com/` + tenant1 + `", resource="https://vault.azure.net"`
	if got := raw.header.Get("WWW-Authenticate"); got != wantHdr {
		t.Errorf("WWW-Authenticate %q, want %q", got, wantHdr)
	}
	if code, _, msg := errorCodes(t, raw); code != "Unauthorized" || msg != "AKV10000: Request is missing a Bearer or PoP token." {
		t.Errorf("body %s", raw.body)
	}
	e.ResetCounters()

	o := clientOpts(hc)
	c := secretsClient(t, publicVault("kv-x"), secretCred(t, o, tenant1, spSec, spSecret, false), o)
	for range 3 {
		if _, err := c.GetSecret(ctx, "a", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	got := e.Counters()
	if got.Challenges != 1 || got.TokenRequests != 1 || got.KeyVaultGets["secret"] != 3 || got.TokenRequestsByClient[spSec] != 1 {
		t.Errorf("counters %+v: want 1 challenge, 1 token, 3 gets", got)
	}
	// Public-cloud route without DisableInstanceDiscovery: instance
	// discovery and openid-configuration were served by the emulator.
	if got.DiscoveryRequests < 2 {
		t.Errorf("DiscoveryRequests %d, want >= 2", got.DiscoveryRequests)
	}
}

func TestChallengeAuthorityPerCloud(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	for host, want := range map[string]string{
		vault1 + ".vault.azure.net":                    `Bearer authorization="https://login.microsoftonline.com/` + tenant1 + `", resource="https://vault.azure.net"`,
		vault1 + ".vault.azure.cn":                     `Bearer authorization="https://login.chinacloudapi.cn/` + tenant1 + `", resource="https://vault.azure.cn"`,
		vault1 + ".vault.usgovcloudapi.net":            `Bearer authorization="https://login.microsoftonline.us/` + tenant1 + `", resource="https://vault.usgovcloudapi.net"`,
		vault1 + "." + e.KeyVaultDNSSuffix():           `Bearer authorization="` + e.URL() + `/` + tenant1 + `", resource="https://` + e.KeyVaultDNSSuffix() + `"`,
		vault1 + "." + e.KeyVaultDNSSuffix() + ":8443": `Bearer authorization="` + e.URL() + `/` + tenant1 + `", resource="https://` + e.KeyVaultDNSSuffix() + `:8443"`,
		"kv-t2.vault.azure.net":                        `Bearer authorization="https://login.microsoftonline.com/` + tenant2 + `", resource="https://vault.azure.net"`,
	} {
		r := do(t, hc, "GET", "https://"+host+"/secrets/s1?api-version=7.4", "", nil, nil)
		if got := r.header.Get("WWW-Authenticate"); r.status != 401 || got != want {
			t.Errorf("%s: %d %q, want 401 %q", host, r.status, got, want)
		}
	}
}

// Wire §3.1-3.3: latest (trailing slash), by version, paging, timestamps,
// disabled versions; over both routes and several credential kinds.
func TestSecretsBothRoutes(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	pub := clientOpts(hc)
	custom := customCloud(e, hc)
	routes := map[string]*azsecrets.Client{
		"public/secret": secretsClient(t, publicVault(vault1), secretCred(t, pub, tenant1, spSec, spSecret, false), pub),
		"custom/secret": secretsClient(t, customVault(e, vault1), secretCred(t, custom, tenant1, spSec, spSecret, true), custom),
	}
	want := e.SecretVersions(vault1, "s1")
	if len(want) != 5 {
		t.Fatalf("SecretVersions: %d versions", len(want))
	}
	for name, c := range routes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := c.GetSecret(ctx, "s1", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if *got.Value != "v5" || got.ID.Version() != want[4].Version || *got.ContentType != "text/plain" || got.Tags["k"] == nil {
				t.Errorf("latest: %+v", got)
			}
			if !got.Attributes.Created.Equal(*want[4].Created) {
				t.Errorf("created %v, want %v", got.Attributes.Created, want[4].Created)
			}
			old, err := c.GetSecret(ctx, "s1", want[1].Version, nil)
			if err != nil || *old.Value != "v2" {
				t.Fatalf("by version: %v %v", old, err)
			}
			var ids []string
			var enabled []bool
			pager := c.NewListSecretPropertiesVersionsPager("s1", nil)
			pages := 0
			for pager.More() {
				p, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, it := range p.Value {
					ids = append(ids, it.ID.Version())
					enabled = append(enabled, *it.Attributes.Enabled)
					if it.Attributes.Created == nil {
						t.Error("list item without created")
					}
				}
			}
			var wantIDs []string
			var wantEnabled []bool
			for _, v := range want {
				wantIDs, wantEnabled = append(wantIDs, v.Version), append(wantEnabled, *v.Enabled)
			}
			if diff := cmp.Diff(wantIDs, ids); diff != "" || pages != 3 {
				t.Errorf("versions over %d pages (-want +got):\n%s", pages, diff)
			}
			if diff := cmp.Diff(wantEnabled, enabled); diff != "" {
				t.Errorf("enabled (-want +got):\n%s", diff)
			}
			_, err = c.GetSecret(ctx, "s1", want[2].Version, nil)
			_ = assertResponseError(t, err, 403, "Forbidden")
			_, err = c.GetSecret(ctx, "disabled-latest", "", nil)
			_ = assertResponseError(t, err, 403, "Forbidden")
			_, err = c.GetSecret(ctx, "missing", "", nil)
			_ = assertResponseError(t, err, 404, "SecretNotFound")
		})
	}
}

func assertResponseError(t *testing.T, err error, status int, code string) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a ResponseError", err)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Errorf("got %d %s, want %d %s", re.StatusCode, re.ErrorCode, status, code)
	}
	return re
}

// Wire §3.2: the raw nextLink is absolute, on the request's host, and
// carries api-version and $skiptoken; the last page has nextLink null.
func TestNextLinkRaw(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	o := clientOpts(hc)
	tok := token(t, secretCred(t, o, tenant1, spSec, spSecret, false), "https://vault.azure.net/.default")
	u := publicVault(vault1) + "/secrets/s1/versions?api-version=7.5"
	for i := 0; u != ""; i++ {
		r := do(t, hc, "GET", u, tok, nil, nil)
		if r.status != 200 {
			t.Fatalf("page %d: %d %s", i, r.status, r.body)
		}
		m := r.json(t)
		next, isString := m["nextLink"].(string)
		if _, present := m["nextLink"]; !present || (m["nextLink"] != nil && !isString) {
			t.Fatalf("nextLink must be present (string or null): %s", r.body)
		}
		if isString {
			nu, err := url.Parse(next)
			if err != nil {
				t.Fatal(err)
			}
			if nu.Host != vault1+".vault.azure.net" || nu.Query().Get("api-version") != "7.5" || nu.Query().Get("$skiptoken") == "" {
				t.Errorf("nextLink %q", next)
			}
		}
		u = next
		if i > 5 {
			t.Fatal("paging does not end")
		}
	}
	// A nextLink without api-version is rejected, like the real service.
	r := do(t, hc, "GET", publicVault(vault1)+"/secrets/s1/versions", tok, nil, nil)
	if code, _, _ := errorCodes(t, r); r.status != 400 || code != "BadParameter" {
		t.Errorf("no api-version: %d %s", r.status, r.body)
	}
}

// Wire §3.4: JWK components base64url without padding (azkeys decodes
// them), the same key as the emulator's expected material.
func TestKeys(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	o := clientOpts(hc)
	cred := secretCred(t, o, tenant1, spSec, spSecret, false)
	c := keysClient(t, publicVault(vault1), cred, o)
	for _, name := range []string{"rsa", "ec", "hsm", "ec-hsm", "pfx", "pem"} {
		got, err := c.GetKey(ctx, name, "", nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, ver, err := e.PublicKey(vault1, name, "")
		if err != nil {
			t.Fatal(err)
		}
		if got.Key.KID.Version() != ver {
			t.Errorf("%s: version %s, want %s", name, got.Key.KID.Version(), ver)
		}
		switch w := want.(type) {
		case *rsa.PublicKey:
			if !bytes.Equal(got.Key.N, w.N.Bytes()) || !bytes.Equal(got.Key.E, []byte{1, 0, 1}) {
				t.Errorf("%s: RSA modulus/exponent differ", name)
			}
		case *ecdsa.PublicKey:
			raw, _ := w.Bytes()
			size := (len(raw) - 1) / 2
			if !bytes.Equal(got.Key.X, raw[1:1+size]) || !bytes.Equal(got.Key.Y, raw[1+size:]) || string(*got.Key.Crv) != w.Curve.Params().Name {
				t.Errorf("%s: EC point differs", name)
			}
		}
		managed := got.Managed != nil && *got.Managed
		if managed != (name == "pfx" || name == "pem") {
			t.Errorf("%s: managed=%v", name, managed)
		}
	}
	hsm, _ := c.GetKey(ctx, "hsm", "", nil)
	if *hsm.Key.Kty != azkeys.KeyTypeRSAHSM {
		t.Errorf("hsm kty %s", *hsm.Key.Kty)
	}
	sym, err := c.GetKey(ctx, "sym", "", nil)
	if err != nil || *sym.Key.Kty != azkeys.KeyTypeOct || sym.Key.K != nil {
		t.Errorf("oct key: %+v %v", sym.Key, err)
	}
	var n int
	pager := c.NewListKeyPropertiesVersionsPager("rsa", nil)
	for pager.More() {
		p, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(p.Value)
	}
	if n != 2 {
		t.Errorf("rsa versions %d, want 2", n)
	}
	// Raw: no padding, URL alphabet.
	tok := token(t, cred, "https://vault.azure.net/.default")
	r := do(t, hc, "GET", publicVault(vault1)+"/keys/rsa/?api-version=2025-07-01", tok, nil, nil)
	n64 := r.json(t)["key"].(map[string]any)["n"].(string)
	if strings.ContainsAny(n64, "=+/") {
		t.Errorf("n is not base64url-raw: %s", n64)
	}
	_, err = c.GetKey(ctx, "missing", "", nil)
	_ = assertResponseError(t, err, 404, "KeyNotFound")
}

// Wire §3.5 and §4: the three faces of a certificate.
func TestCertificateFaces(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	o := customCloud(e, hc)
	cred := secretCred(t, o, tenant1, spSec, spSecret, true)
	vu := customVault(e, vault1)
	cc, sc, kc := certsClient(t, vu, cred, o), secretsClient(t, vu, cred, o), keysClient(t, vu, cred, o)

	for _, name := range []string{"pfx", "pem", "noexport", "pem-noexport"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, err := e.Certificate(vault1, name, "")
			if err != nil {
				t.Fatal(err)
			}
			cert, err := cc.GetCertificate(ctx, name, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(cert.CER)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha1.Sum(leaf.Raw) //nolint:gosec // x5t is the SHA-1 thumbprint
			if !bytes.Equal(leaf.Raw, want.Leaf.Raw) || !bytes.Equal(cert.X509Thumbprint, sum[:]) {
				t.Error("cer/x5t differ from the expected leaf")
			}
			ver := want.Version
			if cert.ID.Version() != ver || cert.KID.Version() != ver || cert.SID.Version() != ver || cert.SID.Name() != name {
				t.Errorf("id/kid/sid versions: %s %s %s", *cert.ID, *cert.KID, *cert.SID)
			}
			if *cert.Policy.SecretProperties.ContentType != want.ContentType {
				t.Errorf("policy contentType %s", *cert.Policy.SecretProperties.ContentType)
			}
			if cert.Attributes.NotBefore == nil || !cert.Attributes.NotBefore.Equal(leaf.NotBefore) {
				t.Errorf("nbf %v, want %v", cert.Attributes.NotBefore, leaf.NotBefore)
			}

			sec, err := sc.GetSecret(ctx, name, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if *sec.Value != want.SecretValue || *sec.ContentType != want.ContentType || !*sec.Managed || sec.KID.Version() != ver {
				t.Errorf("secret face: contentType %s managed %v kid %v", *sec.ContentType, *sec.Managed, sec.KID)
			}
			checkSecretValue(t, *sec.Value, want)

			key, err := kc.GetKey(ctx, name, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !*key.Managed || key.Key.KID.Version() != ver {
				t.Errorf("key face: managed %v kid %s", *key.Managed, *key.Key.KID)
			}
		})
	}

	// Versions of pfx: two, and the old version serves its own material.
	var vers []string
	pager := cc.NewListCertificatePropertiesVersionsPager("pfx", nil)
	for pager.More() {
		p, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Value {
			vers = append(vers, it.ID.Version())
			if len(it.X509Thumbprint) != 20 {
				t.Error("list item without x5t")
			}
		}
	}
	if len(vers) != 2 {
		t.Fatalf("pfx versions %v", vers)
	}
	old, err := e.Certificate(vault1, "pfx", vers[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := sc.GetSecret(ctx, "pfx", vers[0], nil)
	if err != nil || *got.Value != old.SecretValue {
		t.Errorf("old pfx version secret differs: %v", err)
	}
	_, err = cc.GetCertificate(ctx, "missing", "", nil)
	_ = assertResponseError(t, err, 404, "CertificateNotFound")
}

func checkSecretValue(t *testing.T, value string, want *CertMaterial) {
	t.Helper()
	if want.ContentType == ContentTypePKCS12 {
		if strings.ContainsAny(value, "-_") {
			t.Error("PKCS#12 value is not standard base64")
		}
		der, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			t.Fatal(err)
		}
		if want.Key == nil {
			certs, err := pkcs12.DecodeTrustStore(der, "")
			if err != nil || len(certs) != len(want.Chain) {
				t.Errorf("non-exportable PKCS#12: %d certs, %v", len(certs), err)
			}
			return
		}
		key, leaf, cas, err := pkcs12.DecodeChain(der, "")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(leaf.Raw, want.Leaf.Raw) || len(cas) != len(want.Chain)-1 {
			t.Errorf("PKCS#12 leaf/chain mismatch: %d CAs", len(cas))
		}
		if !key.(interface{ Equal(crypto.PrivateKey) bool }).Equal(want.Key) {
			t.Error("PKCS#12 key differs")
		}
		return
	}
	rest := []byte(value)
	var types []string
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		types = append(types, b.Type)
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		} else if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
			t.Errorf("PEM key is not PKCS#8: %v", err)
		}
	}
	wantTypes := []string{}
	if want.Key != nil {
		wantTypes = append(wantTypes, "PRIVATE KEY")
	}
	for range want.Chain {
		wantTypes = append(wantTypes, "CERTIFICATE")
	}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("PEM blocks (-want +got):\n%s", diff)
	}
	for i := range certs {
		if i < len(want.Chain) && !bytes.Equal(certs[i].Raw, want.Chain[i].Raw) {
			t.Errorf("PEM certificate %d is not in stored order", i)
		}
	}
}

// The stored chain order is honoured, including an incomplete chain.
func TestChainOrder(t *testing.T) {
	t.Parallel()
	e := shared(t)
	pem, _ := e.Certificate(vault1, "pem", "")
	if len(pem.Chain) != 3 || !pem.Chain[0].IsCA || pem.Chain[1] != pem.Leaf || pem.Chain[2].Subject.CommonName != vault1+" Intermediate CA" {
		t.Errorf("pem chain order wrong")
	}
	inc, _ := e.Certificate(vault1, "pem-noexport", "")
	if len(inc.Chain) != 2 || inc.Key != nil {
		t.Errorf("incomplete chain: %d certs, key %v", len(inc.Chain), inc.Key != nil)
	}
	// The chain verifies: leaf <- intermediate <- root.
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(pem.Chain[0])
	inters.AddCert(pem.Chain[2])
	if _, err := pem.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: pem.Leaf.NotBefore.Add(time.Hour)}); err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
}

// Wire §5.1: 401/403 bodies with inner codes, parsed raw.
func TestAuthErrorsRaw(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	o := clientOpts(hc)
	base := publicVault(vault1)

	none := token(t, secretCred(t, o, tenant1, spNone, spSecret, false), "https://vault.azure.net/.default")
	r := do(t, hc, "GET", base+"/secrets/s1/?api-version=2026-04-01", none, nil, nil)
	code, inner, msg := errorCodes(t, r)
	if r.status != 403 || code != "Forbidden" || inner != "ForbiddenByRbac" {
		t.Errorf("no grant: %d %s", r.status, r.body)
	}
	mustContain(t, msg, "Caller is not authorized to perform action on resource.\r\n", "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'", "appid="+spNone)

	one := token(t, secretCred(t, o, tenant1, spOne, spSecret, false), "https://vault.azure.net/.default")
	if r := do(t, hc, "GET", base+"/secrets/s1?api-version=7.4", one, nil, nil); r.status != 200 {
		t.Errorf("named grant: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/secrets/rotating", "/keys/rsa", "/certificates/pfx"} {
		if r := do(t, hc, "GET", base+p+"?api-version=7.4", one, nil, nil); r.status != 403 {
			t.Errorf("%s outside named grant: %d", p, r.status)
		}
	}

	// Wrong audience: a token for the China cloud used on vault.azure.net.
	cn := token(t, secretCred(t, o, tenant1, spSec, spSecret, false), "https://vault.azure.cn/.default")
	r = do(t, hc, "GET", base+"/secrets/s1?api-version=7.4", cn, nil, nil)
	if code, _, msg := errorCodes(t, r); r.status != 401 || code != "Unauthorized" || !strings.HasPrefix(msg, "AKV10022") || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("wrong audience: %d %s", r.status, r.body)
	}
	// Wrong tenant: a tenant1 token on a tenant2 vault.
	good := token(t, secretCred(t, o, tenant1, spSec, spSecret, false), "https://vault.azure.net/.default")
	r = do(t, hc, "GET", publicVault("kv-t2")+"/secrets/x?api-version=7.4", good, nil, nil)
	if _, _, msg := errorCodes(t, r); r.status != 401 || !strings.HasPrefix(msg, "AKV10032") {
		t.Errorf("wrong tenant: %d %s", r.status, r.body)
	}
	// Forged token: valid shape, foreign key.
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"aud": "https://vault.azure.net", "tid": tenant1, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("k"))
	if r := do(t, hc, "GET", base+"/secrets/s1?api-version=7.4", forged, nil, nil); r.status != 401 {
		t.Errorf("forged token: %d", r.status)
	}
	// Unknown vault.
	r = do(t, hc, "GET", publicVault("kv-nope")+"/secrets/s1?api-version=7.4", good, nil, nil)
	if code, _, _ := errorCodes(t, r); r.status != 404 || code != "VaultNotFound" {
		t.Errorf("unknown vault: %d %s", r.status, r.body)
	}
	// Secret/key/cert not found: real message shape.
	r = do(t, hc, "GET", base+"/secrets/nope/?api-version=7.4", good, nil, nil)
	if _, _, msg := errorCodes(t, r); !strings.HasPrefix(msg, "A secret with (name/id) nope was not found in this key vault.") {
		t.Errorf("not found message %q", msg)
	}
	// A second tenant's SP reaches its own vault.
	o2 := clientOpts(hc)
	c := secretsClient(t, publicVault("kv-t2"), secretCred(t, o2, tenant2, spT2, spSecret, false), o2)
	if s, err := c.GetSecret(ctx, "x", "", nil); err != nil || *s.Value != "t2" {
		t.Errorf("tenant2 vault: %v", err)
	}
}

// Wire §6.6: token endpoint errors surface through azidentity.
func TestTokenErrors(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	o := customCloud(e, hc)
	scope := "https://vault.azure.net/.default"
	get := func(c azcore.TokenCredential) error {
		_, err := c.GetToken(ctx, policyOpts(scope))
		return err
	}
	err := get(secretCred(t, o, tenant1, spSec, "wrong", true))
	mustContain(t, errString(err), "AADSTS7000215", "RESPONSE 401")
	err = get(secretCred(t, o, tenant1, "c0000000-0000-0000-0000-0000000000ff", spSecret, true))
	mustContain(t, errString(err), "AADSTS700016", "RESPONSE 400")
	err = get(secretCred(t, o, tenant2, spSec, spSecret, true)) // right SP, wrong tenant
	mustContain(t, errString(err), "AADSTS700016")

	assertion := func(tok string) *azidentity.ClientAssertionCredential {
		c, err := azidentity.NewClientAssertionCredential(tenant1, spFed, func(context.Context) (string, error) { return tok, nil },
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: o, DisableInstanceDiscovery: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wrongSub, _ := e.SignServiceAccountToken("ns1", "other", "", time.Hour)
	err = get(assertion(wrongSub))
	mustContain(t, errString(err), "AADSTS70021", "No matching federated identity record found",
		"Assertion Issuer: '"+BuiltinIssuer+"'", "Assertion Subject: 'system:serviceaccount:ns1:other'", "Assertion Audience: 'api://AzureADTokenExchange'")
	wrongAud, _ := e.SignServiceAccountToken("ns1", "sa1", "api://other", time.Hour)
	mustContain(t, errString(get(assertion(wrongAud))), "AADSTS70021")

	// Right claims, foreign signature.
	k, _ := (source{}).rsaKey(2048)
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": BuiltinIssuer, "sub": "system:serviceaccount:ns1:sa1",
		"aud": "api://AzureADTokenExchange", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(k)
	mustContain(t, errString(get(assertion(forged))), "AADSTS700027")

	good, _ := e.SignServiceAccountToken("ns1", "sa1", "", time.Hour)
	if err := get(assertion(good)); err != nil {
		t.Errorf("good assertion: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Workload identity reads the projected token file, as in AKS.
func TestWorkloadIdentityCredential(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	sa, err := e.SignServiceAccountToken("ns1", "sa1", "api://AzureADTokenExchange", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(sa), 0o600); err != nil {
		t.Fatal(err)
	}
	for route, o := range map[string]azcore.ClientOptions{"public": clientOpts(hc), "custom": customCloud(e, hc)} {
		cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: o, ClientID: spFed, TenantID: tenant1, TokenFilePath: file, DisableInstanceDiscovery: route == "custom"})
		if err != nil {
			t.Fatal(err)
		}
		vu := publicVault(vault1)
		if route == "custom" {
			vu = customVault(e, vault1)
		}
		s, err := secretsClient(t, vu, cred, o).GetSecret(ctx, "rotating", "", nil)
		if err != nil || *s.Value != "r1" {
			t.Errorf("%s: %v", route, err)
		}
	}
}

// Wire §7.3/7.5: IMDS through the proxy (absolute-form to 169.254.169.254).
func TestManagedIdentityIMDS(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	o := clientOpts(hc)
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: o, ID: azidentity.ClientID("mi-imds")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := secretsClient(t, publicVault(vault1), cred, o).GetSecret(ctx, "s1", "", nil)
	if err != nil || *s.Value != "v5" {
		t.Fatalf("IMDS user-assigned: %v", err)
	}
	unknown, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: o, ID: azidentity.ClientID("mi-unknown-imds")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = unknown.GetToken(ctx, policyOpts("https://vault.azure.net/.default"))
	mustContain(t, errString(err), "Identity not found")

	imds := "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net"
	r := do(t, hc, "GET", imds, "", nil, nil)
	if r.status != 400 || r.json(t)["error"] != "bad_request_102" {
		t.Errorf("no Metadata header: %d %s", r.status, r.body)
	}
	r = do(t, hc, "GET", imds, "", map[string]string{"Metadata": "true"}, nil) // system-assigned
	m := r.json(t)
	if r.status != 200 || m["client_id"] != "mi-system" || m["expires_in"] != "3599" || m["resource"] != "https://vault.azure.net" {
		t.Errorf("system-assigned: %d %s", r.status, r.body)
	}
	if _, ok := m["expires_on"].(string); !ok {
		t.Errorf("expires_on must be a string: %s", r.body)
	}
}

// App Service shape via IDENTITY_ENDPOINT/IDENTITY_HEADER. Not parallel:
// it sets process environment.
func TestManagedIdentityAppService(t *testing.T) {
	e := shared(t)
	hc := httpClient(t, e)
	t.Setenv("IDENTITY_ENDPOINT", e.ProxyURL()+"/msi/token")
	t.Setenv("IDENTITY_HEADER", DefaultIdentityHeader)
	o := clientOpts(hc)
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: o, ID: azidentity.ClientID("mi-appsvc")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := secretsClient(t, customVault(e, vault1), cred, o).GetSecret(ctx, "s1", "", nil)
	if err != nil || *s.Value != "v5" {
		t.Fatalf("App Service MI: %v", err)
	}
	u := e.ProxyURL() + "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net&client_id=mi-appsvc"
	if r := do(t, hc, "GET", u, "", map[string]string{"X-IDENTITY-HEADER": "wrong"}, nil); r.status != 401 {
		t.Errorf("wrong identity header: %d", r.status)
	}
	r := do(t, hc, "GET", u, "", map[string]string{"X-IDENTITY-HEADER": DefaultIdentityHeader}, nil)
	if m := r.json(t); r.status != 200 || m["client_id"] != "mi-appsvc" || m["token_type"] != "Bearer" {
		t.Errorf("App Service raw: %d %s", r.status, r.body)
	}
}

// Wire §5.2: 429 with Retry-After is retried by azcore; 503 and dropped
// connections too.
func TestFaults(t *testing.T) {
	t.Parallel()
	e := start(t, &Seed{TenantID: tenant1, Vaults: []Vault{{Name: "kv-f", Secrets: []Secret{{Name: "a", Versions: []SecretVersion{{Value: "1"}}}}}},
		ServicePrincipals: []ServicePrincipal{{ClientID: spSec, Secrets: []string{spSecret}}},
		Grants:            []Grant{{Identity: spSec, Vault: "kv-f"}}})
	hc := httpClient(t, e)
	o := clientOpts(hc)
	c := secretsClient(t, publicVault("kv-f"), secretCred(t, o, tenant1, spSec, spSecret, false), o)
	if _, err := c.GetSecret(ctx, "a", "", nil); err != nil { // warm: challenge + token
		t.Fatal(err)
	}
	tok := token(t, secretCred(t, o, tenant1, spSec, spSecret, false), "https://vault.azure.net/.default")

	e.SetFaults(Faults{Throttle: 1, ThrottleRetryAfter: "1"})
	r := do(t, hc, "GET", publicVault("kv-f")+"/secrets/a?api-version=7.4", tok, nil, nil)
	if code, _, _ := errorCodes(t, r); r.status != 429 || code != "Throttled" || r.header.Get("Retry-After") != "1" {
		t.Errorf("raw 429: %d %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}

	e.ResetCounters()
	e.SetFaults(Faults{Throttle: 1, ThrottleRetryAfter: "1"})
	t0 := time.Now()
	if _, err := c.GetSecret(ctx, "a", "", nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 900*time.Millisecond {
		t.Errorf("Retry-After: 1 not honoured, took %v", d)
	}
	e.SetFaults(Faults{Throttle: 2, Unavailable: 1, Drop: 1, KeyVaultLatency: 5 * time.Millisecond})
	if _, err := c.GetSecret(ctx, "a", "", nil); err != nil {
		t.Fatalf("after throttle/503/drop: %v", err)
	}
	got := e.Counters()
	if got.Throttled != 3 || got.Unavailable != 1 || got.Dropped != 1 {
		t.Errorf("counters %+v", got)
	}
	e.SetFaults(Faults{Unavailable: 10})
	_, err := c.GetSecret(ctx, "a", "", nil)
	_ = assertResponseError(t, err, 503, "ServiceUnavailable")
	e.SetFaults(Faults{})

	// Token failures: 500 from Entra is retried by azidentity's pipeline.
	e.SetFaults(Faults{TokenFailures: 1})
	if _, err := secretCred(t, o, tenant1, spSec, spSecret, false).GetToken(ctx, policyOpts("https://vault.azure.net/.default")); err != nil {
		t.Errorf("token after one failure: %v", err)
	}
}

// The admin API: faults JSON, counters, rotation, grants.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	e := start(t, &Seed{TenantID: tenant1, Vaults: []Vault{{Name: "kv-a", Secrets: []Secret{{Name: "a", Versions: []SecretVersion{{Value: "1"}}}}}},
		ServicePrincipals: []ServicePrincipal{{ClientID: spSec, Secrets: []string{spSecret}}},
		Grants:            []Grant{{Identity: spSec, Vault: "kv-a"}}})
	hc := httpClient(t, e)
	admin := e.ProxyURL() + "/admin"
	if r := do(t, hc, "PUT", admin+"/faults", "", nil, strings.NewReader(`{"keyVaultLatency":"20ms","throttle":2,"throttleRetryAfter":"0"}`)); r.status != 200 {
		t.Fatalf("PUT faults: %d %s", r.status, r.body)
	}
	if f := e.Faults(); f.KeyVaultLatency != 20*time.Millisecond || f.Throttle != 2 {
		t.Errorf("faults %+v", f)
	}
	if r := do(t, hc, "PUT", admin+"/faults", "", nil, strings.NewReader(`{"keyVaultLatency":"soon"}`)); r.status != 400 {
		t.Errorf("bad faults: %d", r.status)
	}
	e.SetFaults(Faults{})
	r := do(t, hc, "POST", admin+"/vaults/kv-a/secrets/a", "", nil, strings.NewReader(`{"value":"2","contentType":"text/plain"}`))
	ver, _ := r.json(t)["version"].(string)
	if r.status != 200 || len(ver) != 32 {
		t.Fatalf("add version: %d %s", r.status, r.body)
	}
	o := clientOpts(hc)
	c := secretsClient(t, publicVault("kv-a"), secretCred(t, o, tenant1, spSec, spSecret, false), o)
	s, err := c.GetSecret(ctx, "a", "", nil)
	if err != nil || *s.Value != "2" || s.ID.Version() != ver {
		t.Fatalf("rotated latest: %v %v", s, err)
	}
	if v, err := e.AddSecretVersion("kv-a", "a", "3"); err != nil || v == ver {
		t.Fatalf("AddSecretVersion: %v", err)
	}
	r = do(t, hc, "GET", admin+"/counters", "", nil, nil)
	if m := r.json(t); r.status != 200 || m["keyVaultGets"].(map[string]any)["secret"].(float64) != 1 {
		t.Errorf("counters: %s", r.body)
	}
	if r := do(t, hc, "POST", admin+"/counters/reset", "", nil, nil); r.status != 200 || e.Counters().KeyVaultGetsTotal() != 0 {
		t.Errorf("reset: %d", r.status)
	}
	if r := do(t, hc, "PUT", admin+"/grants", "", nil, strings.NewReader(`[]`)); r.status != 200 {
		t.Fatalf("grants: %d %s", r.status, r.body)
	}
	_, err = c.GetSecret(ctx, "a", "", nil)
	_ = assertResponseError(t, err, 403, "Forbidden")
	if r := do(t, hc, "PUT", admin+"/grants", "", nil, strings.NewReader(`[{"identity":"x","vault":"kv-a","types":["bogus"]}]`)); r.status != 400 {
		t.Errorf("bad grants accepted: %d", r.status)
	}
}

// The proxy serves only emulated hosts and never dials out.
func TestProxyRefusesUnknownHosts(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	r := do(t, hc, "GET", "http://example.com/", "", nil, nil)
	if r.status != 403 || !strings.Contains(string(r.body), "kv-emulator refuses to forward to example.com") {
		t.Errorf("absolute-form: %d %s", r.status, r.body)
	}
	_, err := hc.Get("https://example.com/")
	mustContain(t, errString(err), "Forbidden")
	_, err = hc.Get("https://vault.azure.net.evil.test/")
	mustContain(t, errString(err), "Forbidden")
}

// Deterministic mode: two emulators from one seed serve identical material.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	seed := func() *Seed {
		return &Seed{Deterministic: true, Vaults: []Vault{{Name: "kv-d",
			Secrets:      []Secret{{Name: "s", Versions: []SecretVersion{{Value: "a"}, {Value: "b"}}}},
			Keys:         []Key{{Name: "r", Kty: "RSA"}, {Name: "e", Kty: "EC", Curve: "P-521"}},
			Certificates: []Certificate{{Name: "c"}, {Name: "p", ContentType: ContentTypePEM, KeyType: "EC"}}}},
			ServicePrincipals: []ServicePrincipal{{ClientID: spSec, Secrets: []string{spSecret}}},
			Grants:            []Grant{{Identity: spSec, Vault: "*"}}}
	}
	a, b := start(t, seed()), start(t, seed())
	for _, name := range []string{"c", "p"} {
		ca, err := a.Certificate("kv-d", name, "")
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := b.Certificate("kv-d", name, "")
		if ca.Version != cb.Version || ca.SecretValue != cb.SecretValue || !bytes.Equal(ca.Leaf.Raw, cb.Leaf.Raw) || !bytes.Equal(ca.Chain[2].Raw, cb.Chain[2].Raw) {
			t.Errorf("certificate %s differs between emulators", name)
		}
	}
	for _, name := range []string{"r", "e"} {
		ka, va, _ := a.PublicKey("kv-d", name, "")
		kb, vb, _ := b.PublicKey("kv-d", name, "")
		if va != vb || !ka.(interface{ Equal(crypto.PublicKey) bool }).Equal(kb) {
			t.Errorf("key %s differs", name)
		}
	}
	if diff := cmp.Diff(a.SecretVersions("kv-d", "s"), b.SecretVersions("kv-d", "s")); diff != "" {
		t.Errorf("secret versions differ:\n%s", diff)
	}
	// Served bytes too: the same cer and secret value through the wire.
	served := func(e *Emulator) (string, []byte) {
		hc := httpClient(t, e)
		o := clientOpts(hc)
		cred := secretCred(t, o, DefaultTenantID, spSec, spSecret, false)
		cert, err := certsClient(t, publicVault("kv-d"), cred, o).GetCertificate(ctx, "c", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		sec, err := secretsClient(t, publicVault("kv-d"), cred, o).GetSecret(ctx, "c", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return *sec.Value, cert.CER
	}
	sa, ca := served(a)
	sb, cb := served(b)
	if sa != sb || !bytes.Equal(ca, cb) {
		t.Error("served certificate bytes differ between emulators")
	}
}

func policyOpts(scope string) policy.TokenRequestOptions {
	return policy.TokenRequestOptions{Scopes: []string{scope}}
}
