package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRequestsRecordUserAgent: each Key Vault, Entra ID and managed identity request is recorded
// with the client's User-Agent, and GET /admin/requests returns the same records; admin requests
// and queries are not recorded.
func TestRequestsRecordUserAgent(t *testing.T) {
	t.Parallel()
	e := start(t, testSeed())
	hc := httpClient(t, e)
	do(t, hc, http.MethodGet, publicVault(vault1)+"/secrets/s1?api-version=7.4", "", map[string]string{"User-Agent": "kv-client/1"}, nil)
	do(t, hc, http.MethodGet, "https://login.microsoftonline.com/"+tenant1+"/v2.0/.well-known/openid-configuration", "", map[string]string{"User-Agent": "entra-client/2"}, nil)
	do(t, hc, http.MethodGet, e.ProxyURL()+"/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net", "",
		map[string]string{"User-Agent": "mi-client/3", "Metadata": "true"}, nil)
	do(t, hc, http.MethodGet, e.ProxyURL()+"/admin/counters", "", map[string]string{"User-Agent": "admin"}, nil)

	proxyHost := strings.TrimPrefix(e.ProxyURL(), "http://")
	want := []RequestRecord{
		{Kind: "keyvault", Method: "GET", Host: vault1 + ".vault.azure.net", Path: "/secrets/s1", UserAgent: "kv-client/1", Status: http.StatusUnauthorized},
		{Kind: "entra", Method: "GET", Host: "login.microsoftonline.com", Path: "/" + tenant1 + "/v2.0/.well-known/openid-configuration", UserAgent: "entra-client/2", Status: http.StatusOK},
		{Kind: "managed-identity", Method: "GET", Host: proxyHost, Path: "/metadata/identity/oauth2/token", UserAgent: "mi-client/3", Status: http.StatusOK},
	}
	if diff := cmp.Diff(want, e.Requests()); diff != "" {
		t.Errorf("Requests() (-want +got):\n%s", diff)
	}
	var got []RequestRecord
	if err := json.Unmarshal(do(t, hc, http.MethodGet, e.ProxyURL()+"/admin/requests", "", nil, nil).body, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /admin/requests (-want +got):\n%s", diff)
	}
}

func TestRequestLogIsBounded(t *testing.T) {
	t.Parallel()
	var l requestLog
	for i := range maxRequestRecords + 5 {
		l.add(RequestRecord{Status: i})
	}
	if len(l.recs) != maxRequestRecords || l.recs[0].Status != 5 || l.recs[len(l.recs)-1].Status != maxRequestRecords+4 {
		t.Errorf("after %d adds: %d records, first %d, last %d", maxRequestRecords+5, len(l.recs), l.recs[0].Status, l.recs[len(l.recs)-1].Status)
	}
}
