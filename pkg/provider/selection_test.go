package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// listVault lists what it is given and serves every secret with its name as value.
type listVault struct {
	fakeVault
	items []keyvault.ObjectInfo
}

func (l *listVault) ListSecrets(context.Context) ([]keyvault.ObjectInfo, error) { return l.items, nil }
func (l *listVault) GetSecret(_ context.Context, name, _ string) (keyvault.Secret, error) {
	if name == "gone" {
		return keyvault.Secret{}, &keyvault.Error{Kind: keyvault.KindNotFound, Status: 404, Detail: "404 Not Found (SecretNotFound)"}
	}
	return keyvault.Secret{Version: "v-" + name, Value: "value of " + name}, nil
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
	p := New(Options{})
	sel := config.Object{Type: config.TypeSecret, Tags: prod, Alias: "sel", Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o440}
	r := p.fetchSelection(context.Background(), config.MountConfig{}, v, "kv", sel)
	if r.err != nil {
		t.Fatal(r.err)
	}
	var got []string
	for i, f := range r.files {
		got = append(got, f.Path+"="+string(f.Contents)+"@"+r.versions[i].ID+"/"+r.versions[i].Version)
		if f.Mode != 0o440 {
			t.Errorf("%s mode %o", f.Path, f.Mode)
		}
	}
	want := "sel/app-a=value of app-a@secret/app-a/v-app-a sel/app-b=value of app-b@secret/app-b/v-app-b sel/web=value of web@secret/web/v-web"
	if strings.Join(got, " ") != want {
		t.Errorf("selected:\n%s\nwant:\n%s", strings.Join(got, " "), want)
	}

	capped := New(Options{MaxSelectedObjects: 2})
	if r := capped.fetchSelection(context.Background(), config.MountConfig{}, v, "kv", sel); r.err == nil || !strings.Contains(r.err.Error(), "matches 4 objects, more than the 2 allowed") {
		t.Errorf("cap: %v", r.err)
	}
	hostile := &listVault{items: []keyvault.ObjectInfo{{Name: ".."}}}
	if r := p.fetchSelection(context.Background(), config.MountConfig{}, hostile, "kv", config.Object{Type: config.TypeSecret, NamePrefix: "a"}); r.err == nil ||
		!strings.Contains(r.err.Error(), `Key Vault listed an object named ".."`) {
		t.Errorf("a listed name that is no object name: %v", r.err)
	}
}
