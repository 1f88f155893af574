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
	p := New(Options{NewCredential: newFakeCredential, NewClient: func(vaultURL string, _ azcore.TokenCredential) (keyvault.Client, error) {
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

// TestIdleEntriesAreDropped: identities and vault limiters nobody used for IdleTTL are dropped at
// the next mount, so the maps cannot grow with identities and vault names nobody mounts any more.
func TestIdleEntriesAreDropped(t *testing.T) {
	t.Parallel()
	f := &fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}
	p, _ := newFakeProvider(f, Options{Clients: ClientCacheOptions{IdleTTL: time.Hour}})
	now := time.Now()
	p.clients.now = func() time.Time { return now }
	for _, v := range []string{"kv-one", "kv-two", "kv-three", "kv-four"} {
		cfg := mountConfig(secret("a"))
		cfg.VaultName = v
		cfg.Identity.ClientID = "sp-" + v // one identity per vault
		if _, err := p.Mount(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	if ids, limiters := p.clients.size(); ids != 4 || limiters != 4 {
		t.Fatalf("%d identities, %d limiters; want 4 and 4", ids, limiters)
	}
	now = now.Add(time.Hour + sweepEvery + time.Second)
	if _, err := p.Mount(context.Background(), mountConfig(secret("a"))); err != nil {
		t.Fatal(err)
	}
	if ids, limiters := p.clients.size(); ids != 1 || limiters != 1 {
		t.Errorf("after an idle hour: %d identities, %d limiters; want 1 and 1 (the new mount's)", ids, limiters)
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
