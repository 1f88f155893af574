package provider

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// TestSelectionsAreCountedByWhatTheyMayMatch: a SecretProviderClass whose selections could
// write more files than a mount may is refused before any read.
func TestSelectionsAreCountedByWhatTheyMayMatch(t *testing.T) {
	f := &fakeVault{secrets: map[string][]fakeVersion{"big-1": {{"v", "x", time.Now(), true}}}}
	p, _ := newFakeProvider(f, Options{})
	var objects []config.Object
	for i := range 11 { // 11 x the default 100 matches > 1000 files
		objects = append(objects, config.Object{Type: config.TypeSecret, NamePrefix: "big-", Alias: fmt.Sprintf("d%d", i), Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644})
	}
	_, err := p.Mount(context.Background(), mountConfig(objects...))
	if !isMountKind(err, keyvault.KindInvalidArgument) || !strings.Contains(err.Error(), "could write up to 1100 files") {
		t.Fatalf("11 selections: %v", err)
	}
	if n := f.gets.Load(); n != 0 { // the fake counts lists as reads too
		t.Errorf("%d reads before the refusal, want none", n)
	}
}

// TestMountBytesAreBoundedWhileRendering: a mount whose files pass --max-response-bytes fails as
// soon as they do, with ResourceExhausted, and its remaining reads are not made.
func TestMountBytesAreBoundedWhileRendering(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	f := &fakeVault{secrets: map[string][]fakeVersion{}}
	var objects []config.Object
	for i := range 60 {
		name := fmt.Sprintf("s%d", i)
		f.secrets[name] = []fakeVersion{{"v", big, time.Now(), true}}
		objects = append(objects, secret(name))
	}
	p, _ := newFakeProvider(f, Options{MaxMountBytes: 1 << 20, Parallelism: 4})
	_, err := p.Mount(context.Background(), mountConfig(objects...))
	if !isMountKind(err, keyvault.KindResourceExhausted) || !strings.Contains(err.Error(), "more than 1048576 bytes") {
		t.Fatalf("60 x 100 KiB under a 1 MiB bound: %v", err)
	}
	if n := f.gets.Load(); n >= 60 {
		t.Errorf("%d of 60 objects were read after the bound was passed at about 10", n)
	}
}

// TestFilesAreBoundedWhileRendering: files past config.MaxFiles (here from version histories)
// fail the mount as they are rendered.
func TestFilesAreBoundedWhileRendering(t *testing.T) {
	b := &mountBudget{maxFiles: 3, maxRead: 1 << 20, maxWritten: 1 << 20, large: make(chan struct{}, 1)}
	ctx := context.Background()
	if err := b.chargeFiles(ctx, []File{{Path: "a"}, {Path: "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := b.chargeFiles(ctx, []File{{Path: "c"}, {Path: "d"}}); keyvault.KindOf(err) != keyvault.KindResourceExhausted {
		t.Errorf("a fourth file: %v, want ResourceExhausted", err)
	}
}

// TestLargeMountsTakeTurns: past largeMountBytes a mount needs one of the provider's large-mount
// turns before its next read; a third large mount waits, and fails with the provider's own reason
// at its deadline, or goes on when a turn is given back.
func TestLargeMountsTakeTurns(t *testing.T) {
	p := New(Options{})
	var held []*mountBudget
	for range maxLargeMounts {
		b := p.newBudget()
		if err := b.chargeRead(context.Background(), largeMountBytes+1); err != nil {
			t.Fatal(err)
		}
		if err := b.gate(context.Background()); err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	third := p.newBudget()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := third.chargeRead(ctx, largeMountBytes+1); err != nil {
		t.Fatalf("charging never waits: %v", err)
	}
	err := third.gate(ctx)
	if e := keyvault.AsError(err); e == nil || e.Kind != keyvault.KindUnavailable || e.Code != codeProviderLimit {
		t.Fatalf("a third large mount: %v, want Unavailable from the provider's limit", err)
	}
	var wg sync.WaitGroup
	var got error
	fourth := p.newBudget()
	_ = fourth.chargeRead(context.Background(), largeMountBytes+1)
	wg.Go(func() { got = fourth.gate(context.Background()) })
	time.Sleep(20 * time.Millisecond)
	held[0].release()
	wg.Wait()
	if got != nil {
		t.Errorf("a large mount after a turn was given back: %v", got)
	}
	small := p.newBudget()
	_ = small.chargeRead(context.Background(), largeMountBytes)
	if err := small.gate(context.Background()); err != nil {
		t.Errorf("a mount at the threshold needs no turn: %v", err)
	}
}

// blockingVault blocks every read until release is closed.
type blockingVault struct {
	fakeVault
	release chan struct{}
}

func (b *blockingVault) GetSecret(ctx context.Context, name, version string) (keyvault.Secret, error) {
	<-b.release
	return b.fakeVault.GetSecret(ctx, name, version)
}

// TestConcurrentMountsAreBounded: past --max-concurrent-mounts a mount waits for a turn and fails
// at its deadline with the provider's own reason.
func TestConcurrentMountsAreBounded(t *testing.T) {
	v := &blockingVault{fakeVault: fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}, release: make(chan struct{})}
	p, _ := newFakeProvider(&v.fakeVault, Options{MaxConcurrentMounts: 2})
	p.opts.NewClient = func(string, azcore.TokenCredential) (keyvault.Client, error) { return v, nil }
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _ = p.Mount(context.Background(), mountConfig(secret("a"))) })
	}
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Mount(ctx, mountConfig(secret("a")))
	if !isMountKind(err, keyvault.KindUnavailable) || !strings.Contains(err.Error(), "serving 2 mounts at once (--max-concurrent-mounts)") {
		t.Errorf("a third mount: %v", err)
	}
	close(v.release)
	wg.Wait()
	if _, err := p.Mount(context.Background(), mountConfig(secret("a"))); err != nil {
		t.Errorf("a mount after the others finished: %v", err)
	}
}

// TestManagedIdentityPolicy: the operator decides which namespaces may use the node's managed
// identity, and whether such mounts may list a vault.
func TestManagedIdentityPolicy(t *testing.T) {
	f := &fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}
	mi := func(namespace string, objects ...config.Object) config.MountConfig {
		cfg := mountConfig(objects...)
		cfg.Identity = config.Identity{Mode: config.ManagedIdentity}
		cfg.Pod.Namespace = namespace
		return cfg
	}
	selection := config.Object{Type: config.TypeSecret, NamePrefix: "a", Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644}
	for _, c := range []struct {
		name   string
		policy ManagedIdentityPolicy
		cfg    config.MountConfig
		want   string // "" mounts
	}{
		{"every namespace by default", ManagedIdentityPolicy{}, mi("team-b", secret("a")), ""},
		{"a listed namespace", ManagedIdentityPolicy{Namespaces: []string{"team-a"}}, mi("team-a", secret("a")), ""},
		{"another namespace", ManagedIdentityPolicy{Namespaces: []string{"team-a"}}, mi("team-b", secret("a")), `does not let namespace "team-b" use the node's managed identity`},
		{"no namespace at all", ManagedIdentityPolicy{Namespaces: []string{}}, mi("team-a", secret("a")), `does not let namespace "team-a"`},
		{"other identities are not concerned", ManagedIdentityPolicy{Namespaces: []string{}}, mountConfig(secret("a")), ""},
		{"a selection", ManagedIdentityPolicy{}, mi("team-a", selection), "--allow-managed-identity-selections"},
		{"a selection, allowed", ManagedIdentityPolicy{AllowSelections: true}, mi("team-a", selection), ""},
	} {
		p, _ := newFakeProvider(f, Options{ManagedIdentity: c.policy})
		_, err := p.Mount(context.Background(), c.cfg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (!isMountKind(err, keyvault.KindPermissionDenied) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want PermissionDenied with %q", c.name, err, c.want)
		}
	}
}
