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
	"github.com/google/go-cmp/cmp"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// fakeVault is a map-backed keyvault.Client. Secrets are keyed by name, newest version last.
type fakeVault struct {
	secrets map[string][]fakeVersion
	denied  map[string]bool // secret names that answer 403
	delay   time.Duration

	inFlight, maxInFlight atomic.Int32
	gets                  atomic.Int32
}

type fakeVersion struct {
	version, value string
	created        time.Time
	enabled        bool
}

func (f *fakeVault) track() func() {
	f.gets.Add(1)
	n := f.inFlight.Add(1)
	for {
		m := f.maxInFlight.Load()
		if n <= m || f.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(f.delay)
	return func() { f.inFlight.Add(-1) }
}

func (f *fakeVault) GetSecret(_ context.Context, name, version string) (keyvault.Secret, error) {
	defer f.track()()
	if f.denied[name] {
		return keyvault.Secret{}, &keyvault.Error{Kind: keyvault.KindPermissionDenied, Status: 403, Detail: "403 Forbidden (Forbidden/ForbiddenByRbac)"}
	}
	versions := f.secrets[name]
	for i := len(versions) - 1; i >= 0; i-- {
		if v := versions[i]; version == "" || v.version == version {
			return keyvault.Secret{Version: v.version, Value: v.value}, nil
		}
	}
	return keyvault.Secret{}, &keyvault.Error{Kind: keyvault.KindNotFound, Status: 404, Detail: "404 Not Found (SecretNotFound)"}
}

func (f *fakeVault) SecretVersions(_ context.Context, name string) ([]keyvault.VersionInfo, error) {
	defer f.track()()
	var out []keyvault.VersionInfo
	for _, v := range f.secrets[name] {
		out = append(out, keyvault.VersionInfo{Version: v.version, Created: v.created, Enabled: v.enabled})
	}
	return out, nil
}

func (f *fakeVault) GetKey(context.Context, string, string) (keyvault.Key, error) {
	return keyvault.Key{}, errors.New("not in the fake")
}
func (f *fakeVault) GetCertificate(context.Context, string, string) (keyvault.Certificate, error) {
	return keyvault.Certificate{}, errors.New("not in the fake")
}
func (f *fakeVault) KeyVersions(context.Context, string) ([]keyvault.VersionInfo, error) {
	return nil, errors.New("not in the fake")
}
func (f *fakeVault) CertificateVersions(context.Context, string) ([]keyvault.VersionInfo, error) {
	return nil, errors.New("not in the fake")
}
func (f *fakeVault) ListSecrets(_ context.Context, q keyvault.ListQuery) ([]keyvault.Match, error) {
	defer f.track()()
	var out []keyvault.ObjectInfo
	for name := range f.secrets {
		out = append(out, keyvault.ObjectInfo{Name: name})
	}
	return q.Filter(out, time.Now())
}
func (f *fakeVault) ListCertificates(context.Context, keyvault.ListQuery) ([]keyvault.Match, error) {
	return nil, errors.New("not in the fake")
}

func newFakeProvider(f *fakeVault, o Options) (*Provider, *atomic.Int32) {
	var clients atomic.Int32
	o.NewClient = func(string, azcore.TokenCredential) (keyvault.Client, error) {
		clients.Add(1)
		return f, nil
	}
	if o.NewCredential == nil {
		o.NewCredential = newFakeCredential
	}
	return New(o), &clients
}

func mountConfig(objects ...config.Object) config.MountConfig {
	return config.MountConfig{
		VaultName: "kv-demo", TenantID: "tenant-1", CloudName: config.AzurePublicCloud,
		Identity: config.Identity{Mode: config.ServicePrincipal, ClientID: "sp-1", ClientSecret: "s"},
		Pod:      config.Pod{Namespace: "default", Name: "app"},
		Objects:  objects,
	}
}

func secret(name string, mods ...func(*config.Object)) config.Object {
	o := config.Object{Name: name, Type: config.TypeSecret, Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644}
	for _, m := range mods {
		m(&o)
	}
	return o
}

func TestMountHistory(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &fakeVault{secrets: map[string][]fakeVersion{
		// listed out of created order, with a disabled version
		"s": {
			{"v2", "two", t0.Add(2 * time.Hour), true},
			{"v1", "one", t0.Add(1 * time.Hour), true},
			{"v4", "four", t0.Add(4 * time.Hour), false},
			{"v3", "three", t0.Add(3 * time.Hour), true},
			{"v0", "zero", t0, true},
		},
	}}
	p, _ := newFakeProvider(f, Options{})
	tests := []struct {
		name      string
		obj       config.Object
		wantFiles []File
		wantVers  []ObjectVersion
		wantErr   string
	}{
		{
			name:      "exactly N newest enabled versions",
			obj:       secret("s", func(o *config.Object) { o.History = 2; o.Alias = "hist" }),
			wantFiles: []File{{"hist/0", 0o644, []byte("three")}, {"hist/1", 0o644, []byte("two")}},
			wantVers:  []ObjectVersion{{"secret/s/0", "v3"}, {"secret/s/1", "v2"}},
		},
		{
			name:      "pinned version starts the history",
			obj:       secret("s", func(o *config.Object) { o.History = 3; o.Version = "v1" }),
			wantFiles: []File{{"s/0", 0o644, []byte("one")}, {"s/1", 0o644, []byte("zero")}},
			wantVers:  []ObjectVersion{{"secret/s/0", "v1"}, {"secret/s/1", "v0"}},
		},
		{
			name:    "pinned disabled version",
			obj:     secret("s", func(o *config.Object) { o.History = 3; o.Version = "v4" }),
			wantErr: "version v4 is not among the 4 enabled versions",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := p.Mount(context.Background(), mountConfig(tt.obj))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantFiles, res.Files); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantVers, res.Versions); diff != "" {
				t.Errorf("versions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMountAllOrNothing(t *testing.T) {
	t.Parallel()
	f := &fakeVault{
		secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}, "c": {{"vc", "C", time.Now(), true}}},
		denied:  map[string]bool{"b": true},
	}
	p, _ := newFakeProvider(f, Options{})
	cfg := mountConfig(secret("a"), secret("b"), secret("c"), secret("missing"))
	res, err := p.Mount(context.Background(), cfg)
	if err == nil {
		t.Fatal("mount succeeded")
	}
	if len(res.Files) != 0 || len(res.Versions) != 0 {
		t.Errorf("a failed mount returned files: %+v", res)
	}
	var me *MountError
	if !errors.As(err, &me) || me.Kind() != keyvault.KindPermissionDenied {
		t.Fatalf("error %v: want a MountError of kind PermissionDenied (the first failed object)", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"2 of 4 objects failed for pod default/app as service principal (client ID sp-1) in tenant tenant-1",
		`get secret "b" (version latest) in vault "kv-demo": 403 Forbidden`,
		`"Key Vault Secrets User" role on vault "kv-demo"`,
		`get secret "missing" (version latest) in vault "kv-demo": 404 Not Found (SecretNotFound); check objectName`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Index(msg, `secret "b"`) > strings.Index(msg, `secret "missing"`) {
		t.Error("failures are not in object order")
	}
	if strings.Contains(msg, "\n") {
		t.Error("message spans lines")
	}
}

func TestMountParallelismIsBounded(t *testing.T) {
	t.Parallel()
	f := &fakeVault{secrets: map[string][]fakeVersion{}, delay: 20 * time.Millisecond}
	var objs []config.Object
	for i := range 12 {
		name := fmt.Sprintf("s%d", i)
		f.secrets[name] = []fakeVersion{{"v", name, time.Now(), true}}
		objs = append(objs, secret(name))
	}
	p, _ := newFakeProvider(f, Options{Parallelism: 3})
	res, err := p.Mount(context.Background(), mountConfig(objs...))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.maxInFlight.Load(); got != 3 {
		t.Errorf("max concurrent reads = %d, want 3", got)
	}
	for i, file := range res.Files {
		if want := fmt.Sprintf("s%d", i); file.Path != want || string(file.Contents) != want {
			t.Errorf("file %d = %s, want %s (order must follow the objects)", i, file.Path, want)
		}
	}
}

func TestClientsAreKeptPerIdentity(t *testing.T) {
	t.Parallel()
	f := &fakeVault{secrets: map[string][]fakeVersion{"a": {{"va", "A", time.Now(), true}}}}
	p, clients := newFakeProvider(f, Options{Clients: ClientCacheOptions{MaxIdentities: 2}})
	mount := func(clientID, secretValue, vault string) {
		cfg := mountConfig(secret("a"))
		cfg.Identity.ClientID, cfg.Identity.ClientSecret, cfg.VaultName = clientID, secretValue, vault
		if _, err := p.Mount(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); mount("sp-1", "s", "kv-demo") }()
	}
	wg.Wait()
	if got := clients.Load(); got != 1 {
		t.Fatalf("10 mounts of one identity built %d clients, want 1", got)
	}
	mount("sp-1", "other-secret", "kv-demo") // a different secret is a different identity
	mount("sp-1", "s", "kv-other")           // same identity, another vault: a new client
	if got := clients.Load(); got != 3 {
		t.Errorf("clients built = %d, want 3", got)
	}
	mount("sp-3", "s", "kv-demo") // a third identity evicts the least recently used
	if got, _ := p.clients.size(); got != 2 {
		t.Errorf("identities kept = %d, want the bound 2", got)
	}
}

func TestMountDuplicateSeparateFiles(t *testing.T) {
	t.Parallel()
	if err := checkUniquePaths([]File{{Path: "a.crt"}, {Path: "a"}, {Path: "a.crt"}}); err == nil || !strings.Contains(err.Error(), `"a.crt"`) {
		t.Errorf("duplicate not reported: %v", err)
	}
}
