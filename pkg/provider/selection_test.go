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

// listVault lists what it is given (secrets and certificates alike), filtered by the query as
// keyvault's client filters it, and serves every object with its name as value. It counts lists
// and reads.
type listVault struct {
	fakeVault
	items []keyvault.ObjectInfo

	mu      sync.Mutex
	lists   map[string]int // by "secret" or "cert"
	queries map[string]bool
	reads   map[string]int // by "secret/<name>" or "cert/<name>"
}

func (l *listVault) count(m *map[string]int, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[key]++
}

func (l *listVault) list(kind string, q keyvault.ListQuery) ([]keyvault.Match, error) {
	l.count(&l.lists, kind)
	l.mu.Lock()
	if l.queries == nil {
		l.queries = map[string]bool{}
	}
	l.queries[q.Key()] = true
	l.mu.Unlock()
	return q.Filter(l.items, time.Now())
}

func (l *listVault) ListSecrets(_ context.Context, q keyvault.ListQuery) ([]keyvault.Match, error) {
	return l.list("secret", q)
}

func (l *listVault) ListCertificates(_ context.Context, q keyvault.ListQuery) ([]keyvault.Match, error) {
	return l.list("cert", q)
}

func (l *listVault) GetSecret(_ context.Context, name, _ string) (keyvault.Secret, error) {
	l.count(&l.reads, "secret/"+name)
	if name == "gone" {
		return keyvault.Secret{}, &keyvault.Error{Kind: keyvault.KindNotFound, Status: 404, Detail: "404 Not Found (SecretNotFound)"}
	}
	return keyvault.Secret{Version: "v-" + name, Value: "value of " + name}, nil
}

func (l *listVault) GetCertificate(_ context.Context, name, _ string) (keyvault.Certificate, error) {
	l.count(&l.reads, "cert/"+name)
	return keyvault.Certificate{Version: "v-" + name, DER: []byte("der of " + name)}, nil
}

func TestFetchSelection(t *testing.T) {
	t.Parallel()
	now := time.Now()
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	no := false
	prod := map[string]string{"env": "prod"}
	v := &listVault{items: []keyvault.ObjectInfo{
		{Name: "app-b", Attributes: keyvault.Attributes{Tags: prod}},
		{Name: "app-a", Attributes: keyvault.Attributes{Tags: prod, Expires: &future, NotBefore: &past}},
		{Name: "app-off", Attributes: keyvault.Attributes{Tags: prod, Enabled: &no}},
		{Name: "app-old", Attributes: keyvault.Attributes{Tags: prod, Expires: &past}},
		{Name: "app-soon", Attributes: keyvault.Attributes{Tags: prod, NotBefore: &future}},
		{Name: "app-dev", Attributes: keyvault.Attributes{Tags: map[string]string{"env": "dev"}}},
		{Name: "gone", Attributes: keyvault.Attributes{Tags: prod}},
		{Name: "web", Attributes: keyvault.Attributes{Tags: prod}},
	}}
	mountOf := func(vault keyvault.Client, o Options, objects ...config.Object) (Result, error) {
		o.NewCredential = newFakeCredential
		o.NewClient = func(string, azcore.TokenCredential) (keyvault.Client, error) { return vault, nil }
		return New(o).Mount(context.Background(), mountConfig(objects...))
	}
	sel := config.Object{Type: config.TypeSecret, Tags: prod, Alias: "sel", Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o440}
	r, err := mountOf(v, Options{}, sel)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, f := range r.Files {
		got = append(got, f.Path+"="+string(f.Contents)+"@"+r.Versions[i].ID+"/"+r.Versions[i].Version)
		if f.Mode != 0o440 {
			t.Errorf("%s mode %o", f.Path, f.Mode)
		}
	}
	want := "sel/app-a=value of app-a@secret/app-a/v-app-a sel/app-b=value of app-b@secret/app-b/v-app-b sel/web=value of web@secret/web/v-web"
	if strings.Join(got, " ") != want {
		t.Errorf("selected:\n%s\nwant:\n%s", strings.Join(got, " "), want)
	}

	if _, err := mountOf(v, Options{MaxSelectedObjects: 2}, sel); err == nil ||
		!strings.Contains(err.Error(), "the selection matches more than the 2 objects allowed (--max-selected-objects): narrow objectNamePrefix or objectTags, split the entry, or raise --max-selected-objects") {
		t.Errorf("cap: %v", err)
	}
	hostile := &listVault{items: []keyvault.ObjectInfo{{Name: ".."}}}
	if _, err := mountOf(hostile, Options{}, config.Object{Type: config.TypeSecret, NamePrefix: ".", Format: config.FormatPEM, Encoding: config.EncodingUTF8}); err == nil ||
		!strings.Contains(err.Error(), `Key Vault listed an object named ".."`) {
		t.Errorf("a listed name that is no object name: %v", err)
	}
}

// TestSelectionsShareOneListing: 256 selection entries over one vault (different prefixes, some
// overlapping, secrets and certificates) list the vault once per type per mount, and each
// matched object is read once, however many entries match it.
func TestSelectionsShareOneListing(t *testing.T) {
	t.Parallel()
	v := &listVault{}
	for i := range 300 {
		v.items = append(v.items, keyvault.ObjectInfo{Name: fmt.Sprintf("s%03d-x", i)})
	}
	const secretEntries, certEntries = 240, 16
	var objs []config.Object
	for i := range secretEntries {
		prefix := fmt.Sprintf("s%03d-", i)
		if i%40 == 39 {
			prefix = fmt.Sprintf("s%03d", i-9) // s030 for entry 39: overlaps entry 30
		}
		objs = append(objs, config.Object{Type: config.TypeSecret, NamePrefix: prefix, Alias: fmt.Sprintf("e%03d", i),
			Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644})
	}
	for i := range certEntries {
		objs = append(objs, config.Object{Type: config.TypeCert, NamePrefix: fmt.Sprintf("s%03d-", i), Alias: fmt.Sprintf("c%03d", i),
			Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644})
	}
	// 256 selections of at most 3 objects each may write 768 files, within config.MaxFiles.
	p := New(Options{MaxSelectedObjects: 3, NewCredential: newFakeCredential,
		NewClient: func(string, azcore.TokenCredential) (keyvault.Client, error) { return v, nil }})
	res, err := p.Mount(context.Background(), mountConfig(objs...))
	if err != nil {
		t.Fatal(err)
	}
	if v.lists["secret"] != 1 || v.lists["cert"] != 1 || len(v.queries) != 2 {
		t.Errorf("lists %v with %d distinct queries, want one listing per type", v.lists, len(v.queries))
	}
	// One file per entry; the six overlapping entries read no object of their own.
	if len(res.Files) != secretEntries+certEntries {
		t.Errorf("%d files, want %d", len(res.Files), secretEntries+certEntries)
	}
	for key, n := range v.reads {
		if n != 1 {
			t.Errorf("%s read %d times, want once", key, n)
		}
	}
	if want := secretEntries - 6 + certEntries; len(v.reads) != want {
		t.Errorf("%d objects read, want %d", len(v.reads), want)
	}
}

// TestSelectionCapNamesTheEntry: the listing stops at the first selector past
// --max-selected-objects; that entry says it matches too many, the other entries that shared the
// listing name it.
func TestSelectionCapNamesTheEntry(t *testing.T) {
	t.Parallel()
	v := &listVault{}
	for _, n := range []string{"a-1", "a-2", "a-3", "b-1"} {
		v.items = append(v.items, keyvault.ObjectInfo{Name: n})
	}
	entry := func(prefix string) config.Object {
		return config.Object{Type: config.TypeSecret, NamePrefix: prefix, Alias: prefix, Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644}
	}
	p := New(Options{MaxSelectedObjects: 2, NewCredential: newFakeCredential, NewClient: func(string, azcore.TokenCredential) (keyvault.Client, error) { return v, nil }})
	_, err := p.Mount(context.Background(), mountConfig(entry("b-"), entry("a-")))
	if err == nil {
		t.Fatal("mounted a selection of 3 with --max-selected-objects 2")
	}
	msg := err.Error()
	for _, want := range []string{
		`get secrets selected by objectNamePrefix "a-" in vault "kv-demo": the selection matches more than the 2 objects allowed (--max-selected-objects)`,
		`get secrets selected by objectNamePrefix "b-" in vault "kv-demo": the vault's list, shared by every selection of the mount, stopped: ` +
			`another entry (secrets selected by objectNamePrefix "a-") matches more than the 2 objects allowed`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if v.lists["secret"] != 1 {
		t.Errorf("%d listings, want 1", v.lists["secret"])
	}
}
