package emulator

import (
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Wire §3.3-§3.5: tags on all three faces and on list items; a secret's nbf and exp as integer
// Unix seconds in GET and list; collection lists (GET /secrets, /certificates) through the SDK's
// pagers, page by page, with disabled objects listed as such.
func TestCollectionListsAndAttributes(t *testing.T) {
	t.Parallel()
	e := shared(t)
	hc := httpClient(t, e)
	o := clientOpts(hc)
	cred := secretCred(t, o, tenant1, spSec, spSecret, false)
	secrets := secretsClient(t, publicVault(vault1), cred, o)
	keys := keysClient(t, publicVault(vault1), cred, o)
	certs := certsClient(t, publicVault(vault1), cred, o)

	got, err := secrets.GetSecret(ctx, "windowed", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	seeded := e.SecretVersions(vault1, "windowed")[0]
	if got.Attributes.NotBefore == nil || !got.Attributes.NotBefore.Equal(*seeded.NotBefore) ||
		got.Attributes.Expires == nil || !got.Attributes.Expires.Equal(*seeded.Expires) {
		t.Errorf("nbf/exp = %v/%v, want %v/%v", got.Attributes.NotBefore, got.Attributes.Expires, seeded.NotBefore, seeded.Expires)
	}
	if *got.Tags["team"] != "a" || *got.Tags["env"] != "prod" || len(got.Tags) != 2 {
		t.Errorf("tags %v", got.Tags)
	}
	k, err := keys.GetKey(ctx, "ec", "", nil)
	if err != nil || k.Tags["use"] == nil || *k.Tags["use"] != "sign" {
		t.Errorf("key tags %v, %v", k.Tags, err)
	}
	for _, face := range []func() (map[string]*string, error){
		func() (map[string]*string, error) {
			c, err := certs.GetCertificate(ctx, "pem-noexport", "", nil)
			return c.Tags, err
		},
		func() (map[string]*string, error) {
			s, err := secrets.GetSecret(ctx, "pem-noexport", "", nil)
			return s.Tags, err
		},
		func() (map[string]*string, error) {
			k, err := keys.GetKey(ctx, "pem-noexport", "", nil)
			return k.Tags, err
		},
	} {
		if tags, err := face(); err != nil || tags["team"] == nil || *tags["team"] != "a" {
			t.Errorf("certificate face tags %v, %v", tags, err)
		}
	}

	// GET /secrets: every secret and certificate-backed secret, by name, in pages of 2.
	type item struct {
		Name, Tags  string
		Enabled     bool
		Managed     bool
		Nbf, Exp    bool
		HasVersion  bool
		ContentType string
	}
	var items []item
	pages := 0
	pager := secrets.NewListSecretPropertiesPager(nil)
	for pager.More() {
		p, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range p.Value {
			tags := ""
			for k, v := range it.Tags {
				tags += k + "=" + *v + ";"
			}
			if len(it.Tags) > 1 {
				tags = "many"
			}
			ct := ""
			if it.ContentType != nil {
				ct = *it.ContentType
			}
			items = append(items, item{Name: it.ID.Name(), Tags: tags, Enabled: *it.Attributes.Enabled, Managed: it.Managed != nil && *it.Managed,
				Nbf: it.Attributes.NotBefore != nil, Exp: it.Attributes.Expires != nil, HasVersion: it.ID.Version() != "", ContentType: ct})
		}
	}
	want := []item{
		{Name: "disabled-latest", Enabled: false},
		{Name: "noexport", Enabled: true, Managed: true, Nbf: true, Exp: true, ContentType: ContentTypePKCS12},
		{Name: "pem", Enabled: true, Managed: true, Nbf: true, Exp: true, ContentType: ContentTypePEM},
		{Name: "pem-noexport", Tags: "team=a;", Enabled: true, Managed: true, Nbf: true, Exp: true, ContentType: ContentTypePEM},
		{Name: "pfx", Enabled: true, Managed: true, Nbf: true, Exp: true, ContentType: ContentTypePKCS12},
		{Name: "rotating", Enabled: true},
		{Name: "s1", Tags: "k=v;", Enabled: true, ContentType: "text/plain"},
		{Name: "windowed", Tags: "many", Enabled: true, Nbf: true, Exp: true},
	}
	if diff := cmp.Diff(want, items); diff != "" {
		t.Errorf("GET /secrets (-want +got):\n%s", diff)
	}
	if pages != 4 {
		t.Errorf("%d pages for %d items at pageSize 2, want 4", pages, len(items))
	}

	var names []string
	cpager := certs.NewListCertificatePropertiesPager(nil)
	for cpager.More() {
		p, err := cpager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Value {
			names = append(names, it.ID.Name())
			if it.Attributes == nil || it.Attributes.Expires == nil || it.X509Thumbprint == nil {
				t.Errorf("certificate item %s lacks exp or x5t", it.ID.Name())
			}
		}
	}
	if diff := cmp.Diff([]string{"noexport", "pem", "pem-noexport", "pfx"}, names); diff != "" {
		t.Errorf("GET /certificates (-want +got):\n%s", diff)
	}
}

// Wire §3.2: without the seed's pageSize, maxresults sets the page size (1-25, else 400) and the
// nextLink carries it.
func TestListMaxResults(t *testing.T) {
	t.Parallel()
	s := testSeed()
	s.PageSize = 0
	s.Vaults = s.Vaults[:1]
	s.Vaults[0].Certificates, s.Vaults[0].Keys = nil, nil
	e := start(t, s)
	hc := httpClient(t, e)
	tok := token(t, secretCred(t, clientOpts(hc), tenant1, spSec, spSecret, false), "https://vault.azure.net/.default")
	u := publicVault(vault1) + "/secrets?api-version=7.5&maxresults=3"
	var sizes []int
	for u != "" {
		r := do(t, hc, "GET", u, tok, nil, nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		m := r.json(t)
		sizes = append(sizes, len(m["value"].([]any)))
		u, _ = m["nextLink"].(string)
		if u != "" {
			if nu, err := url.Parse(u); err != nil || nu.Query().Get("maxresults") != "3" {
				t.Errorf("nextLink %q lacks maxresults=3", u)
			}
		}
	}
	if diff := cmp.Diff([]int{3, 1}, sizes); diff != "" {
		t.Errorf("page sizes (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"0", "26", "x"} {
		r := do(t, hc, "GET", publicVault(vault1)+"/secrets?api-version=7.5&maxresults="+bad, tok, nil, nil)
		if code, _, _ := errorCodes(t, r); r.status != 400 || code != "BadParameter" {
			t.Errorf("maxresults=%s: %d %s", bad, r.status, r.body)
		}
	}
}

// AddSecret (and its admin route) adds a version with tags, enabled and a validity window, which
// the list shows.
func TestAddSecretAttributes(t *testing.T) {
	t.Parallel()
	s := testSeed()
	s.Vaults = s.Vaults[:1]
	s.Vaults[0].Certificates, s.Vaults[0].Keys = nil, nil
	e := start(t, s)
	exp := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	if _, err := e.AddSecret(vault1, "added", SecretVersion{Value: "x", Tags: map[string]string{"team": "b"}, Expires: &exp, Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	many := map[string]string{}
	for i := range 16 {
		many[string(rune('a'+i))] = "v"
	}
	if _, err := e.AddSecret(vault1, "too-many", SecretVersion{Value: "x", Tags: many}); err == nil {
		t.Error("16 tags accepted")
	}
	hc := httpClient(t, e)
	o := clientOpts(hc)
	c := secretsClient(t, publicVault(vault1), secretCred(t, o, tenant1, spSec, spSecret, false), o)
	pager := c.NewListSecretPropertiesPager(nil)
	found := false
	for pager.More() {
		p, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Value {
			if it.ID.Name() == "added" {
				found = true
				if *it.Attributes.Enabled || !it.Attributes.Expires.Equal(exp) || *it.Tags["team"] != "b" {
					t.Errorf("added: enabled %v exp %v tags %v", *it.Attributes.Enabled, it.Attributes.Expires, it.Tags)
				}
			}
		}
	}
	if !found {
		t.Error("the added secret is not listed")
	}
}
