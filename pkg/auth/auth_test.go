package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/go-cmp/cmp"

	"github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
)

func token(payload string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

// saTokenFor is an (unsigned) service account token of issuer for subject, expiring at exp.
func saTokenFor(issuer, subject string, exp int64) string {
	return token(fmt.Sprintf(`{"iss":%q,"sub":%q,"exp":%d,"aud":["api://AzureADTokenExchange"]}`, issuer, subject, exp))
}

func resolve(t *testing.T, name string) cloud.Environment {
	t.Helper()
	env, err := cloud.Resolve(name, "")
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestCacheKey checks which identities share credentials and clients: only those proven by the
// same thing, in the same tenant and cloud.
func TestCacheKey(t *testing.T) {
	t.Parallel()
	public, china := resolve(t, config.AzurePublicCloud), resolve(t, config.AzureChinaCloud)
	stack := cloud.Environment{Name: config.AzureStackCloud, AuthorityHost: "https://adfs.local.azurestack.external/", KeyVaultDNSSuffix: "vault.local.azurestack.external"}
	stack2 := stack
	stack2.KeyVaultDNSSuffix = "vault.other.azurestack.external"

	const iss = "https://oidc.example/cluster-1"
	sp := func(clientID, secret string) config.Identity {
		return config.Identity{Mode: config.ServicePrincipal, ClientID: clientID, ClientSecret: secret}
	}
	wi := func(tok string) config.Identity {
		return config.Identity{Mode: config.WorkloadIdentity, ClientID: "app", Token: tok}
	}
	appA := saTokenFor(iss, "system:serviceaccount:ns:a", 1)
	type side struct {
		id     config.Identity
		tenant string
		env    cloud.Environment
	}
	tests := []struct {
		name string
		a, b side
		same bool
	}{
		{"same service principal", side{sp("app", "s1"), "t", public}, side{sp("app", "s1"), "t", public}, true},
		{"two secrets of one service principal", side{sp("app", "s1"), "t", public}, side{sp("app", "s2"), "t", public}, false},
		{"two service principals, one secret", side{sp("app1", "s"), "t", public}, side{sp("app2", "s"), "t", public}, false},
		{"two tokens of one issuer and subject", side{wi(appA), "t", public},
			side{wi(saTokenFor(iss, "system:serviceaccount:ns:a", 2)), "t", public}, true},
		{"two service accounts of a namespace", side{wi(appA), "t", public}, side{wi(saTokenFor(iss, "system:serviceaccount:ns:b", 1)), "t", public}, false},
		{"one service account name in two namespaces", side{wi(appA), "t", public}, side{wi(saTokenFor(iss, "system:serviceaccount:other:a", 1)), "t", public}, false},
		{"one subject of two issuers (clusters)", side{wi(appA), "t", public}, side{wi(saTokenFor("https://oidc.example/cluster-2", "system:serviceaccount:ns:a", 1)), "t", public}, false},
		{"two unreadable tokens", side{wi("garbage-1"), "t", public}, side{wi("garbage-2"), "t", public}, false},
		{"one subject, two workload identity apps", side{wi(appA), "t", public},
			side{config.Identity{Mode: config.WorkloadIdentity, ClientID: "app2", Token: appA}, "t", public}, false},
		{"two tenants, service principal", side{sp("app", "s"), "t1", public}, side{sp("app", "s"), "t2", public}, false},
		{"two tenants, workload identity", side{wi(appA), "t1", public}, side{wi(appA), "t2", public}, false},
		{"two tenants, managed identity", side{config.Identity{Mode: config.ManagedIdentity}, "t1", public}, side{config.Identity{Mode: config.ManagedIdentity}, "t2", public}, false},
		{"tenant IDs differing in case", side{sp("app", "s"), "Tenant-A", public}, side{sp("app", "s"), "tenant-a", public}, true},
		{"two clouds, service principal", side{sp("app", "s"), "t", public}, side{sp("app", "s"), "t", china}, false},
		{"two clouds, workload identity", side{wi(appA), "t", public}, side{wi(appA), "t", china}, false},
		{"two Azure Stack vault suffixes", side{sp("app", "s"), "t", stack}, side{sp("app", "s"), "t", stack2}, false},
		{"system- and user-assigned managed identity", side{config.Identity{Mode: config.ManagedIdentity}, "t", public},
			side{config.Identity{Mode: config.ManagedIdentity, ClientID: "uami"}, "t", public}, false},
		{"two user-assigned managed identities", side{config.Identity{Mode: config.ManagedIdentity, ClientID: "uami-1"}, "t", public},
			side{config.Identity{Mode: config.ManagedIdentity, ClientID: "uami-2"}, "t", public}, false},
		{"managed identity and a service principal of one client ID", side{config.Identity{Mode: config.ManagedIdentity, ClientID: "app"}, "t", public},
			side{sp("app", ""), "t", public}, false},
		{"workload identity and identity binding of one client ID and token", side{wi(appA), "t", public},
			side{config.Identity{Mode: config.IdentityBinding, ClientID: "app", Token: appA}, "t", public}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := CacheKey(tt.a.id, tt.a.tenant, tt.a.env), CacheKey(tt.b.id, tt.b.tenant, tt.b.env)
			if (a == b) != tt.same {
				t.Errorf("keys equal = %v, want %v:\n%q\n%q", a == b, tt.same, a, b)
			}
			for _, s := range []side{tt.a, tt.b} {
				key := CacheKey(s.id, s.tenant, s.env)
				for _, cred := range []string{s.id.ClientSecret, s.id.Token} {
					if len(cred) > 2 && strings.Contains(key, cred) {
						t.Errorf("the key %q holds a credential", key)
					}
				}
			}
		})
	}
}

func TestTokenSubject(t *testing.T) {
	t.Parallel()
	iss, sub := TokenSubject(token(`{"iss":"https://issuer","sub":"system:serviceaccount:ns:a"}`))
	if iss != "https://issuer" || sub != "system:serviceaccount:ns:a" {
		t.Errorf("TokenSubject = %q, %q", iss, sub)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", token("not json")} {
		if iss, sub := TokenSubject(bad); iss != "" || sub != "" {
			t.Errorf("TokenSubject(%q) = %q, %q", bad, iss, sub)
		}
	}
}

func TestReadClaims(t *testing.T) {
	t.Parallel()
	const exp = 1893456000 // 2030-01-01
	got, ok := ReadClaims(saTokenFor("https://issuer", "system:serviceaccount:ns:a", exp))
	want := Claims{Issuer: "https://issuer", Subject: "system:serviceaccount:ns:a", Expiry: time.Unix(exp, 0)}
	if !ok {
		t.Fatal("a well-formed token is unreadable")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	bigPayload := `{"sub":"system:serviceaccount:ns:a","pad":"` + strings.Repeat("x", maxTokenBytes) + `"}`
	for name, bad := range map[string]string{
		"empty":                 "",
		"two parts":             "a.b",
		"four parts":            token(`{"sub":"s"}`) + ".d",
		"payload not base64url": "a.!!!.c",
		"payload padded base64": "a." + base64.URLEncoding.EncodeToString([]byte(`{"sub":"s"}`)) + ".c",
		"payload not JSON":      token("not json"),
		"sub not a string":      token(`{"sub":7}`),
		"longer than the limit": token(bigPayload),
	} {
		if c, ok := ReadClaims(bad); ok {
			t.Errorf("%s: ReadClaims = %+v, true; want unreadable", name, c)
		}
	}
}

func TestCheckTokenSubject(t *testing.T) {
	t.Parallel()
	pod := config.Pod{Namespace: "apps", Name: "web-0", ServiceAccount: "web"}
	const own = "system:serviceaccount:apps:web"
	tests := []struct {
		name  string
		token string
		pod   config.Pod
		want  []string // in the error; nil: no error
	}{
		{"the pod's own token", saTokenFor("https://issuer", own, 1), pod, nil},
		{"another namespace's service account", saTokenFor("https://issuer", "system:serviceaccount:other:web", 1), pod,
			[]string{`names "system:serviceaccount:other:web"`, `pod apps/web-0 runs as "system:serviceaccount:apps:web"`, "tokenRequests"}},
		{"another service account of the namespace", saTokenFor("https://issuer", "system:serviceaccount:apps:admin", 1), pod,
			[]string{`names "system:serviceaccount:apps:admin"`, `runs as "system:serviceaccount:apps:web"`}},
		{"a subject that only starts like the pod's", saTokenFor("https://issuer", own+"x", 1), pod,
			[]string{`names "system:serviceaccount:apps:webx"`, `runs as "system:serviceaccount:apps:web"`}},
		{"an unreadable token", "not-a-jwt", pod, []string{"not a readable JWT", `pod apps/web-0 runs as "system:serviceaccount:apps:web"`}},
		{"a token without a subject", token(`{"iss":"https://issuer"}`), pod, []string{"not a readable JWT with a subject", `runs as "system:serviceaccount:apps:web"`}},
		{"no pod namespace", saTokenFor("https://issuer", own, 1), config.Pod{Name: "web-0", ServiceAccount: "web"},
			[]string{"no pod namespace or service account", "podInfoOnMount: true"}},
		{"no pod service account", saTokenFor("https://issuer", own, 1), config.Pod{Namespace: "apps", Name: "web-0"},
			[]string{"no pod namespace or service account", "podInfoOnMount: true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckTokenSubject(tt.token, tt.pod)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckTokenSubject: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckTokenSubject accepted the token")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("the error repeats the token: %q", err)
			}
		})
	}

	t.Run("a long subject is shortened", func(t *testing.T) {
		t.Parallel()
		err := CheckTokenSubject(saTokenFor("https://issuer", "system:serviceaccount:apps:"+strings.Repeat("w", 8000), 1), pod)
		if err == nil || len(err.Error()) > 1000 {
			t.Errorf("error of %d bytes, want a refusal of at most 1000: %.200v", len(fmt.Sprint(err)), err)
		}
	})
}

func TestKeyVaultScope(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env  cloud.Environment
		want string
	}{
		{resolve(t, config.AzurePublicCloud), "https://vault.azure.net/.default"},
		{resolve(t, config.AzureChinaCloud), "https://vault.azure.cn/.default"},
		{resolve(t, config.AzureUSGovernmentCloud), "https://vault.usgovcloudapi.net/.default"},
		{cloud.Environment{KeyVaultDNSSuffix: "vault.local.azurestack.external"}, "https://vault.local.azurestack.external/.default"},
	} {
		if got := KeyVaultScope(tt.env); got != tt.want {
			t.Errorf("KeyVaultScope(%s) = %q, want %q", tt.env.KeyVaultDNSSuffix, got, tt.want)
		}
	}
}

// recordingCredential records the token request it gets.
type recordingCredential struct {
	got policy.TokenRequestOptions
	err error
}

func (c *recordingCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.got = o
	return azcore.AccessToken{Token: "at", ExpiresOn: time.Now().Add(time.Hour)}, c.err
}

// TestProve checks that a proof asks for what a Key Vault read asks for, so the token it caches is
// the one the reads use, and that a refusal is returned.
func TestProve(t *testing.T) {
	t.Parallel()
	env := resolve(t, config.AzureChinaCloud)
	c := &recordingCredential{}
	if err := Prove(context.Background(), c, env, "tenant-1"); err != nil {
		t.Fatal(err)
	}
	want := policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.cn/.default"}, TenantID: "tenant-1", EnableCAE: true}
	if diff := cmp.Diff(want, c.got); diff != "" {
		t.Errorf("token request (-want +got):\n%s", diff)
	}
	refused := errors.New("AADSTS700213: no matching federated identity record")
	if err := Prove(context.Background(), &recordingCredential{err: refused}, env, "tenant-1"); !errors.Is(err, refused) {
		t.Errorf("Prove = %v, want the credential's error", err)
	}
}

func TestAssertion(t *testing.T) {
	t.Parallel()
	a := &Assertion{}
	if _, err := a.Get(context.Background()); err == nil {
		t.Error("an empty assertion holder returned a token")
	}
	a.Set("tok")
	if got, _ := a.Get(context.Background()); got != "tok" {
		t.Errorf("assertion = %q", got)
	}
	a.Set("tok-2")
	if got, _ := a.Get(context.Background()); got != "tok-2" {
		t.Errorf("assertion after Set = %q, want the newest token", got)
	}
}

// TestNewCredentialEveryMode checks that each identity mode gets the azidentity credential that
// authenticates that way, and that an identity without a known mode gets none.
func TestNewCredentialEveryMode(t *testing.T) {
	t.Parallel()
	env := resolve(t, config.AzurePublicCloud)
	a := &Assertion{}
	a.Set("tok")
	tests := []struct {
		id   config.Identity
		o    Options
		want string
	}{
		{config.Identity{Mode: config.WorkloadIdentity, ClientID: "app", Token: "tok"}, Options{}, fmt.Sprintf("%T", &azidentity.ClientAssertionCredential{})},
		{config.Identity{Mode: config.ManagedIdentity}, Options{}, fmt.Sprintf("%T", &azidentity.ManagedIdentityCredential{})},
		{config.Identity{Mode: config.ManagedIdentity, ClientID: "mi"}, Options{}, fmt.Sprintf("%T", &azidentity.ManagedIdentityCredential{})},
		{config.Identity{Mode: config.ServicePrincipal, ClientID: "app", ClientSecret: "s"}, Options{}, fmt.Sprintf("%T", &azidentity.ClientSecretCredential{})},
		// Identity binding's credential is checked through the token proxy in tokenproxy_test.go.
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			t.Parallel()
			c, err := NewCredential(tt.id, "tenant", env, a, tt.o)
			if err != nil {
				t.Fatalf("NewCredential: %v", err)
			}
			if got := fmt.Sprintf("%T", c); got != tt.want {
				t.Errorf("credential is a %s, want a %s", got, tt.want)
			}
		})
	}
	for name, tt := range map[string]struct {
		id config.Identity
		o  Options
	}{
		"no mode":                          {config.Identity{}, Options{}},
		"unknown mode":                     {config.Identity{Mode: 99}, Options{}},
		"identity binding over plain HTTP": {config.Identity{Mode: config.IdentityBinding, ClientID: "uami"}, Options{TokenProxyURL: "http://proxy.example"}},
	} {
		if _, err := NewCredential(tt.id, "tenant", env, a, tt.o); err == nil {
			t.Errorf("%s: got a credential", name)
		}
	}
}
