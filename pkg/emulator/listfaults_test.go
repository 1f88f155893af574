package emulator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// listSeed is a vault of five secrets listed two a page, for the list faults.
func listSeed() *Seed {
	var secrets []Secret
	for i := range 5 {
		secrets = append(secrets, Secret{Name: fmt.Sprintf("s%d", i), Versions: []SecretVersion{{Value: "v"}}})
	}
	return &Seed{TenantID: tenant1, PageSize: 2, Vaults: []Vault{{Name: "kv-list", Secrets: secrets}},
		ServicePrincipals: []ServicePrincipal{{ClientID: spSec, Secrets: []string{spSecret}}},
		Grants:            []Grant{{Identity: spSec, Vault: "kv-list"}}}
}

// listAll lists every secret through the SDK's pager, as a client that follows every nextLink.
func listAll(t *testing.T, c *azsecrets.Client) (names []string, pages int, err error) {
	t.Helper()
	pager := c.NewListSecretPropertiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return names, pages, err
		}
		pages++
		for _, p := range page.Value {
			names = append(names, p.ID.Name())
		}
	}
	return names, pages, nil
}

// TestForeignNextLink: the fault points the nextLink at the decoy, a loopback TLS listener with
// the emulator's certificate; a client that follows it (the SDK's pager does) sends it its token,
// and the decoy counts the request and the Authorization header.
func TestForeignNextLink(t *testing.T) {
	t.Parallel()
	e := start(t, listSeed())
	hc := httpClient(t, e)
	o := clientOpts(hc)
	cred := secretCred(t, o, tenant1, spSec, spSecret, false)
	c := secretsClient(t, publicVault("kv-list"), cred, o)

	tok := token(t, cred, "https://vault.azure.net/.default")
	e.SetFaults(Faults{ForeignNextLink: 1})
	r := do(t, hc, "GET", publicVault("kv-list")+"/secrets?api-version=7.4", tok, nil, nil)
	next, _ := r.json(t)["nextLink"].(string)
	if r.status != 200 || !strings.HasPrefix(next, e.DecoyURL()+"/secrets?") || !strings.Contains(next, "api-version=7.4") {
		t.Fatalf("page %d, nextLink %q, want one on %s", r.status, next, e.DecoyURL())
	}
	if got := e.Counters(); got.DecoyRequests != 0 {
		t.Errorf("the decoy counted %d requests before any", got.DecoyRequests)
	}

	e.SetFaults(Faults{ForeignNextLink: 1})
	names, pages, err := listAll(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "s0,s1" || pages != 2 {
		t.Errorf("listed %v in %d pages, want the first page then the decoy's empty last page", names, pages)
	}
	if got := e.Counters(); got.DecoyRequests != 1 || got.DecoyAuthorizations != 1 {
		t.Errorf("decoy counted %d requests, %d with a token; want 1 and 1 (the SDK follows any host)", got.DecoyRequests, got.DecoyAuthorizations)
	}
	// A last page gets a foreign link too, and the fault is used up.
	e.SetFaults(Faults{})
	e.ResetCounters()
	if names, _, err := listAll(t, c); err != nil || len(names) != 5 {
		t.Errorf("after the fault: %v, %v", names, err)
	}
	if got := e.Counters(); got.DecoyRequests != 0 {
		t.Errorf("decoy counted %d requests without the fault", got.DecoyRequests)
	}
}

// TestEmptyPages: the fault answers empty pages that point at themselves; the list goes on where
// it was once the fault is used up.
func TestEmptyPages(t *testing.T) {
	t.Parallel()
	e := start(t, listSeed())
	hc := httpClient(t, e)
	o := clientOpts(hc)
	c := secretsClient(t, publicVault("kv-list"), secretCred(t, o, tenant1, spSec, spSecret, false), o)
	if _, _, err := listAll(t, c); err != nil { // the challenge
		t.Fatal(err)
	}
	e.ResetCounters()
	e.SetFaults(Faults{EmptyPages: 7})
	names, pages, err := listAll(t, c)
	if err != nil || strings.Join(names, ",") != "s0,s1,s2,s3,s4" || pages != 3+7 {
		t.Errorf("listed %v in %d pages (%v), want all five in 3 pages and 7 empty ones", names, pages, err)
	}
	if got := e.Counters().KeyVaultLists["secret"]; got != 10 {
		t.Errorf("%d list requests, want 10", got)
	}
}

// TestAddVaultAndBulkSecrets: a vault added at run time with its own page size, many secrets with
// maximum-size tags at once, and the same through the admin routes.
func TestAddVaultAndBulkSecrets(t *testing.T) {
	t.Parallel()
	e := start(t, listSeed())
	hc := httpClient(t, e)
	o := clientOpts(hc)
	cred := secretCred(t, o, tenant1, spSec, spSecret, false)

	if err := e.AddVault(Vault{Name: "kv-bulk", PageSize: 25}); err != nil {
		t.Fatal(err)
	}
	if err := e.AddVault(Vault{Name: "KV-BULK"}); err == nil {
		t.Error("a second vault of the same name was added")
	}
	if err := e.AddVault(Vault{Name: "kv-other", TenantID: "unknown-tenant"}); err == nil {
		t.Error("a vault in an unknown tenant was added")
	}
	e.AddGrants(Grant{Identity: spSec, Vault: "kv-bulk", Types: []string{"secret"}})
	b := BulkSecrets{Count: 25000, Tags: 15}
	start := time.Now()
	if n, err := e.AddSecrets("kv-bulk", b); err != nil || n != 25000 {
		t.Fatalf("AddSecrets: %d, %v", n, err)
	}
	t.Logf("25,000 secrets with 15 maximum-size tags added in %v", time.Since(start).Round(time.Millisecond))
	if _, err := e.AddSecrets("kv-bulk", BulkSecrets{Prefix: "bulk-0000", Count: 2}); err == nil || !strings.Contains(err.Error(), `already holds "bulk-00000"`) {
		t.Errorf("a name added twice: %v", err)
	}

	c := secretsClient(t, publicVault("kv-bulk"), cred, o)
	pager := c.NewListSecretPropertiesPager(nil)
	page, err := pager.NextPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Value) != 25 || page.Value[0].ID.Name() != "bulk-00000" || page.Value[24].ID.Name() != "bulk-00024" || page.NextLink == nil {
		t.Fatalf("first page: %d items, next %v", len(page.Value), page.NextLink)
	}
	tags := page.Value[3].Tags
	if len(tags) != 15 {
		t.Fatalf("%d tags", len(tags))
	}
	for k, v := range tags {
		if len(k) != 512 || v == nil || len(*v) != 256 {
			t.Errorf("tag of %d characters valued %d", len(k), len(*v))
		}
	}
	if want := b.BulkTags(); len(want) != 15 || *tags[pad("tag-07-", 'n', 512)] != want[pad("tag-07-", 'n', 512)] {
		t.Errorf("BulkTags does not describe the tags served")
	}
	s, err := c.GetSecret(ctx, "bulk-12345", "", nil)
	if err != nil || *s.Value != "bulk-value" {
		t.Errorf("GetSecret: %v", err)
	}
	// A page later in the list costs its own items only.
	start = time.Now()
	for range 10 {
		if page, err = pager.NextPage(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("10 pages of 25 secrets with 15 maximum-size tags served in %v", time.Since(start).Round(time.Millisecond))

	admin := e.ProxyURL() + "/admin"
	for _, step := range []struct{ path, body, want string }{
		{"/vaults", `{"name":"kv-admin","pageSize":3,"secrets":[{"name":"one","versions":[{"value":"1"}]}]}`, `{"vault":"kv-admin"}`},
		{"/vaults/kv-admin/bulk-secrets", `{"prefix":"x-","count":10,"tags":2,"tagNameLength":16,"tagValueLength":4}`, `{"added":10}`},
		{"/grants", `[{"identity":"` + spSec + `","vault":"kv-admin"}]`, `{"grants":1}`},
	} {
		if r := do(t, hc, "POST", admin+step.path, "", nil, strings.NewReader(step.body)); r.status != 200 || strings.TrimSpace(string(r.body)) != step.want {
			t.Fatalf("POST %s: %d %s", step.path, r.status, r.body)
		}
	}
	if r := do(t, hc, "POST", admin+"/vaults/kv-admin/bulk-secrets", "", nil, strings.NewReader(`{"count":0}`)); r.status != 400 {
		t.Errorf("a bulk of 0: %d %s", r.status, r.body)
	}
	names, pages, err := listAll(t, secretsClient(t, publicVault("kv-admin"), cred, o))
	if err != nil || len(names) != 11 || names[0] != "one" || names[1] != "x-0" || pages != 4 {
		t.Errorf("kv-admin lists %v in %d pages of 3 (%v)", names, pages, err)
	}
	// The grants in force before the POST still hold.
	if _, _, err := listAll(t, secretsClient(t, publicVault("kv-list"), cred, o)); err != nil {
		t.Errorf("the seed's grant: %v", err)
	}
}
