package provider

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/akv-csi/provider/pkg/keyvault"
)

// panicVault panics on every read, as a bug in a dependency might.
type panicVault struct{ fakeVault }

func (*panicVault) GetSecret(context.Context, string, string) (keyvault.Secret, error) {
	panic("boom in a read")
}

// TestPanicInAReadFailsOnlyThatMount: a panic on a read's goroutine becomes Internal for that
// mount (a panic there would otherwise end the process), and the provider keeps serving.
func TestPanicInAReadFailsOnlyThatMount(t *testing.T) {
	t.Parallel()
	good := &fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}
	p := New(Options{NewClient: func(vaultURL string, _ azcore.TokenCredential) (keyvault.Client, error) {
		if strings.Contains(vaultURL, "kv-panic") {
			return &panicVault{}, nil
		}
		return good, nil
	}})
	cfg := mountConfig(secret("a"))
	cfg.VaultName = "kv-panic"
	_, err := p.Mount(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "internal error in the provider") {
		t.Fatalf("a panicking read: %v", err)
	}
	var me *MountError
	if !errors.As(err, &me) || me.Kind() != keyvault.KindInternal {
		t.Errorf("kind of a panicking read = %v, want Internal", err)
	}
	if _, err := p.Mount(context.Background(), mountConfig(secret("a"))); err != nil {
		t.Errorf("the next mount failed: %v", err)
	}
}

// TestLimitersArePrunedWithIdentities: a vault's limiter goes when the last identity that used it
// is dropped, so the map cannot grow with vault names nobody mounts any more.
func TestLimitersArePrunedWithIdentities(t *testing.T) {
	t.Parallel()
	f := &fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}
	p, _ := newFakeProvider(f, Options{Clients: ClientCacheOptions{MaxIdentities: 2}})
	for i, v := range []string{"kv-one", "kv-two", "kv-three", "kv-four"} {
		cfg := mountConfig(secret("a"))
		cfg.VaultName = v
		cfg.Identity.ClientID = "sp-" + v // one identity per vault
		if _, err := p.Mount(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		ids, limiters := p.clients.size()
		if want := min(i+1, 2); ids != want || limiters != want {
			t.Errorf("after %d vaults: %d identities, %d limiters; want %d and %d", i+1, ids, limiters, want, want)
		}
	}
}

// TestKeptResultsExpireAndAreBounded: a kept result is dropped (with its bytes) when it expires,
// and results past the byte ceiling are not kept at all.
func TestKeptResultsExpireAndAreBounded(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 4000)
	f := &fakeVault{secrets: map[string][]fakeVersion{
		"a": {{"va", big, time.Now(), true}}, "b": {{"vb", big, time.Now(), true}}, "c": {{"vc", big, time.Now(), true}}}}
	p, _ := newFakeProvider(f, Options{Sharing: SharingOptions{ResultTTL: 100 * time.Millisecond, ResultCacheMaxBytes: 9000}})
	if _, err := p.Mount(context.Background(), mountConfig(secret("a"), secret("b"), secret("c"))); err != nil {
		t.Fatal(err)
	}
	used := p.clients.budget.used.Load()
	if used <= 8000 || used > 9000 {
		t.Errorf("kept bytes = %d, want two of the three 4000-byte results under the 9000-byte ceiling", used)
	}
	f.gets.Store(0)
	if _, err := p.Mount(context.Background(), mountConfig(secret("a"), secret("b"), secret("c"))); err != nil {
		t.Fatal(err)
	}
	if got := f.gets.Load(); got != 1 {
		t.Errorf("within the TTL: %d reads, want 1 (the result that was not kept)", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.clients.budget.used.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.clients.budget.used.Load(); got != 0 {
		t.Errorf("%d bytes still kept after the TTL", got)
	}
	var kept int
	for _, id := range p.clients.identities {
		for _, c := range id.clients {
			c.mu.Lock()
			kept += len(c.kept)
			c.mu.Unlock()
		}
	}
	if kept != 0 {
		t.Errorf("%d results still referenced after the TTL", kept)
	}
}
