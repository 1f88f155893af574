package emulator

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Odd requests never crash the emulator or produce a 5xx, and the log
// never carries secret values, client secrets or tokens.
func TestOddRequestsAndLogHygiene(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var logs bytes.Buffer
	e, err := Start(Options{Seed: testSeed(), Logf: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&logs, f+"\n", a...)
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	hc := httpClient(t, e)
	o := clientOpts(hc)
	tok := token(t, secretCred(t, o, tenant1, spSec, spSecret, false), "https://vault.azure.net/.default")
	if s, err := secretsClient(t, publicVault(vault1), secretCred(t, o, tenant1, spSec, spSecret, false), o).GetSecret(ctx, "s1", "", nil); err != nil || *s.Value != "v5" {
		t.Fatal(err)
	}
	hosts := []string{vault1 + ".vault.azure.net", "x.vault.azure.net", ".vault.azure.net", "login.microsoftonline.com", "[::1]:1", "", "a..b"}
	paths := []string{"/", "//", "/secrets", "/secrets/", "/secrets//", "/secrets//versions", "/secrets/s1/versions/extra", "/keys/sym/x/y",
		"/certificates/pfx/policy", "/nope", "/common/discovery/instance", "/x/v2.0/.well-known/openid-configuration",
		"/" + tenant1 + "/oauth2/v2.0/token", "/secrets/s1/versions?$skiptoken=%%%", "/secrets/s1/versions?$skiptoken=-1&maxresults=99"}
	for _, h := range hosts {
		for _, p := range paths {
			for _, bearer := range []string{"", tok, "garbage"} {
				req, err := http.NewRequest("GET", e.URL()+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.URL.Opaque = strings.SplitN(p, "?", 2)[0]
				if q := strings.SplitN(p, "?", 2); len(q) == 2 {
					req.URL.RawQuery = q[1] + "&api-version=7.4"
				} else {
					req.URL.RawQuery = "api-version=7.4"
				}
				req.Host = h
				if bearer != "" {
					req.Header.Set("Authorization", "Bearer "+bearer)
				}
				resp, err := hc.Do(req)
				if err != nil {
					continue // e.g. an unparseable Host is rejected client-side
				}
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					t.Errorf("%s %s: %d", h, p, resp.StatusCode)
				}
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, secret := range []string{spSecret, tok[:40], "v5"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log contains %q", secret)
		}
	}
}
