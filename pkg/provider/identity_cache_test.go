package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// fakeCredential stands in for azidentity: Entra ID issues a token unless the client secret or
// the managed identity's client ID starts with "made-up".
type fakeCredential struct {
	id       config.Identity
	requests *atomic.Int64 // token requests, when counted
}

var fakeTokenRequests atomic.Int64 // every fake token request of the test binary

func newFakeCredential(id config.Identity, _ string, _ cloud.Environment, _ *auth.Assertion, _ auth.Options) (azcore.TokenCredential, error) {
	return &fakeCredential{id: id, requests: &fakeTokenRequests}, nil
}

func (f *fakeCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.requests.Add(1)
	if strings.HasPrefix(f.id.ClientSecret, "made-up") || strings.HasPrefix(f.id.ClientID, "made-up") {
		return azcore.AccessToken{}, errors.New("AADSTS7000215: Invalid client secret provided")
	}
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// deniedVault answers every read with 403, as Key Vault does for an identity without a role.
type deniedVault struct{ fakeVault }

func (*deniedVault) GetSecret(context.Context, string, string) (keyvault.Secret, error) {
	return keyvault.Secret{}, &keyvault.Error{Kind: keyvault.KindPermissionDenied, Status: 403, Code: "Forbidden/ForbiddenByRbac", Detail: "403 Forbidden"}
}

// cacheFixture is a provider whose vaults serve identities whose client ID starts with "ok" and
// refuse every other one, counting the credentials and clients it builds.
type cacheFixture struct {
	p                    *Provider
	good                 *fakeVault
	credentials, clients atomic.Int64
}

func newCacheFixture(o Options) *cacheFixture {
	fx := &cacheFixture{good: &fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}}
	o.NewCredential = func(id config.Identity, tenantID string, env cloud.Environment, a *auth.Assertion, ao auth.Options) (azcore.TokenCredential, error) {
		fx.credentials.Add(1)
		return newFakeCredential(id, tenantID, env, a, ao)
	}
	o.NewClient = func(_ string, cred azcore.TokenCredential) (keyvault.Client, error) {
		fx.clients.Add(1)
		if strings.HasPrefix(cred.(*fakeCredential).id.ClientID, "ok") {
			return fx.good, nil
		}
		return &deniedVault{}, nil
	}
	fx.p = New(o)
	return fx
}

func spMount(clientID, clientSecret string, vaults ...string) config.MountConfig {
	cfg := mountConfig(secret("a"))
	cfg.Identity.ClientID, cfg.Identity.ClientSecret = clientID, clientSecret
	for _, v := range vaults {
		cfg.Objects = append(cfg.Objects, secret("a", func(o *config.Object) { o.VaultName = v; o.Alias = "from-" + v }))
	}
	return cfg
}

// TestOnlyProvenIdentitiesAreKept: 1,000 mounts with made-up service principals and managed
// identities, each naming 15 more vaults, keep nothing (they never get past Entra ID), and
// identities Key Vault refuses stay in their small pool: neither evicts the proven identity, whose
// next mount builds no credential and no client and asks for no token.
func TestOnlyProvenIdentitiesAreKept(t *testing.T) {
	fx := newCacheFixture(Options{Clients: ClientCacheOptions{MaxIdentities: 4, MaxUnproven: 8}})
	ctx := context.Background()
	if _, err := fx.p.Mount(ctx, spMount("ok-app", "right")); err != nil {
		t.Fatal(err)
	}
	var vaults []string
	for i := range config.MaxVaults - 1 {
		vaults = append(vaults, fmt.Sprintf("kv-victim-%d", i))
	}
	for i := range 1000 {
		cfg := spMount(fmt.Sprintf("sp-%d", i), fmt.Sprintf("made-up-%d", i), vaults...)
		if i%2 == 1 {
			cfg.Identity = config.Identity{Mode: config.ManagedIdentity, ClientID: fmt.Sprintf("made-up-%d", i)}
		}
		_, err := fx.p.Mount(ctx, cfg)
		if keyvault.KindOf(err) != keyvault.KindUnauthenticated && !isMountKind(err, keyvault.KindUnauthenticated) {
			t.Fatalf("a made-up identity: %v, want Unauthenticated", err)
		}
	}
	for i := range 50 { // real identities the vault refuses
		if _, err := fx.p.Mount(ctx, spMount(fmt.Sprintf("denied-%d", i), "real", vaults...)); !isMountKind(err, keyvault.KindPermissionDenied) {
			t.Fatalf("a refused identity: %v, want PermissionDenied", err)
		}
	}
	proven, unproven, clients, _, _ := fx.p.clients.sizes()
	if proven != 1 || unproven != 8 || clients > 1+8*config.MaxVaults {
		t.Errorf("kept %d proven, %d unproven identities and %d clients; want 1, the pool's 8 and at most %d", proven, unproven, clients, 1+8*config.MaxVaults)
	}
	creds, built, tokens := fx.credentials.Load(), fx.clients.Load(), fakeTokenRequests.Load()
	if _, err := fx.p.Mount(ctx, spMount("ok-app", "right")); err != nil {
		t.Fatal(err)
	}
	if fx.credentials.Load() != creds || fx.clients.Load() != built || fakeTokenRequests.Load() != tokens {
		t.Errorf("the proven identity's next mount built %d credentials and %d clients and asked for %d tokens, want none",
			fx.credentials.Load()-creds, fx.clients.Load()-built, fakeTokenRequests.Load()-tokens)
	}
}

func isMountKind(err error, k keyvault.Kind) bool {
	var me *MountError
	return errors.As(err, &me) && me.Kind() == k
}

// TestVaultsPerIdentityAreBounded: an identity that mounts from more vaults than the bound keeps
// only the most recently used clients.
func TestVaultsPerIdentityAreBounded(t *testing.T) {
	fx := newCacheFixture(Options{})
	for i := range 3 * config.MaxVaults {
		cfg := spMount("ok-app", "right")
		cfg.VaultName = fmt.Sprintf("kv-%d", i)
		if _, err := fx.p.Mount(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, clients, _, _ := fx.p.clients.sizes(); clients != config.MaxVaults {
		t.Errorf("clients kept = %d, want %d", clients, config.MaxVaults)
	}
}

// TestNewIdentityIsNotStarvedByRefusedOnes: while identities the vault refuses flood it (and
// made-up ones fail at Entra ID), a new identity's first mount takes the main budget and succeeds
// in time.
func TestNewIdentityIsNotStarvedByRefusedOnes(t *testing.T) {
	fx := newCacheFixture(Options{Sharing: SharingOptions{VaultRateLimit: 20, VaultBurst: 20}})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			for j := 0; ctx.Err() == nil; j++ {
				mctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				id, secret := fmt.Sprintf("denied-%d", i), "real"
				if j%2 == 1 {
					id, secret = fmt.Sprintf("made-up-%d-%d", i, j), "made-up"
				}
				if _, err := fx.p.Mount(mctx, spMount(id, secret)); isMountKind(err, keyvault.KindPermissionDenied) {
					refused.Add(1)
				}
				cancel()
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // the refused identities are on probation and its budget is spent
	for i := range 5 {
		mctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := fx.p.Mount(mctx, spMount(fmt.Sprintf("ok-new-%d", i), "right"))
		cancel()
		if err != nil {
			t.Errorf("new identity %d was starved by the flood: %v", i, err)
		}
	}
	stop()
	wg.Wait()
	if refused.Load() < 8 {
		t.Fatalf("the flood got %d refusals: it did not reach the vault", refused.Load())
	}
}

// flakyPanicVault panics on its first read, then serves.
type flakyPanicVault struct {
	fakeVault
	panicked atomic.Bool
}

func (f *flakyPanicVault) GetSecret(ctx context.Context, name, version string) (keyvault.Secret, error) {
	if !f.panicked.Swap(true) {
		panic("boom in a shared read")
	}
	return f.fakeVault.GetSecret(ctx, name, version)
}

// TestPanicInASharedReadReleasesIt: a read that panics is released with its error (nothing is
// kept, nobody waits for it), so the next mount of the same object on the same vault reads again
// at once.
func TestPanicInASharedReadReleasesIt(t *testing.T) {
	v := &flakyPanicVault{fakeVault: fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}}
	p := New(Options{NewCredential: newFakeCredential, Sharing: SharingOptions{ResultTTL: 10 * time.Second},
		NewClient: func(string, azcore.TokenCredential) (keyvault.Client, error) { return v, nil }})
	if _, err := p.Mount(context.Background(), mountConfig(secret("a"))); !isMountKind(err, keyvault.KindInternal) {
		t.Fatalf("the panicking read: %v, want Internal", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	res, err := p.Mount(ctx, mountConfig(secret("a")))
	if err != nil || string(res.Files[0].Contents) != "A" {
		t.Fatalf("the next mount of the same object: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the next mount took %v: it waited for the panicked read", took)
	}
}
