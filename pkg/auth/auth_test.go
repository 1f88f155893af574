package auth

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
)

func token(payload string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestCacheKeyIncludesWhatProvesTheIdentity(t *testing.T) {
	t.Parallel()
	env, _ := cloud.Resolve(config.AzurePublicCloud, "")
	sp := func(secret string) string {
		return CacheKey(config.Identity{Mode: config.ServicePrincipal, ClientID: "app", ClientSecret: secret}, "t", env)
	}
	if first, again := sp("a"), sp("a"); first != again {
		t.Error("the same service principal has two keys")
	}
	if sp("a") == sp("b") {
		t.Error("a wrong secret would reach the right secret's credential")
	}
	wi := func(tok string) string {
		return CacheKey(config.Identity{Mode: config.WorkloadIdentity, ClientID: "app", Token: tok}, "t", env)
	}
	a1 := token(`{"iss":"https://issuer","sub":"system:serviceaccount:ns:a","exp":1}`)
	a2 := token(`{"iss":"https://issuer","sub":"system:serviceaccount:ns:a","exp":2}`)
	b := token(`{"iss":"https://issuer","sub":"system:serviceaccount:ns:b"}`)
	if wi(a1) != wi(a2) {
		t.Error("two tokens of one service account should share the credential")
	}
	if wi(a1) == wi(b) {
		t.Error("another service account would reach the credential")
	}
	if wi("garbage-1") == wi("garbage-2") {
		t.Error("unreadable tokens must never share a credential")
	}
	mi := CacheKey(config.Identity{Mode: config.ManagedIdentity, ClientID: "app"}, "t", env)
	if mi == sp("a") || mi == wi(a1) {
		t.Error("modes share a key")
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

func TestNewCredentialEveryMode(t *testing.T) {
	t.Parallel()
	env, _ := cloud.Resolve(config.AzurePublicCloud, "")
	a := &Assertion{}
	if _, err := a.Get(context.Background()); err == nil {
		t.Error("an empty assertion holder returned a token")
	}
	a.Set("tok")
	if got, _ := a.Get(context.Background()); got != "tok" {
		t.Errorf("assertion = %q", got)
	}
	for _, id := range []config.Identity{
		{Mode: config.WorkloadIdentity, ClientID: "app"},
		{Mode: config.ManagedIdentity},
		{Mode: config.ManagedIdentity, ClientID: "mi"},
		{Mode: config.ServicePrincipal, ClientID: "app", ClientSecret: "s"},
	} {
		if c, err := NewCredential(id, "tenant", env, a, Options{}); err != nil || c == nil {
			t.Errorf("NewCredential(%s): %v", id, err)
		}
	}
	if _, err := NewCredential(config.Identity{}, "tenant", env, a, Options{}); err == nil {
		t.Error("an identity without a mode got a credential")
	}
}
