package keyvault

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// staticCred hands out one token.
type staticCred struct{}

func (staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "test-token-Xq7", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// fakeHost is a TLS server standing in for one host. It answers Key Vault's challenge to a request
// without a token, and hands every other request to serve. It records every request, and those
// that carried an Authorization header.
type fakeHost struct {
	srv                *httptest.Server
	requests, withAuth atomic.Int32
}

func newFakeHost(t *testing.T, serve func(w http.ResponseWriter, r *http.Request, n int)) *fakeHost {
	t.Helper()
	h := &fakeHost{}
	var authorized atomic.Int32
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/tenant-1", resource="https://vault.test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.withAuth.Add(1)
		serve(w, r, int(authorized.Add(1))-1)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// testClient is a Client of https://kv.vault.test whose connections reach the fake hosts by
// name (host:port), with no retry delay.
func testClient(t *testing.T, hosts map[string]*fakeHost) *SDKClient {
	t.Helper()
	dialer := &net.Dialer{}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test servers on loopback
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			h := hosts[strings.ToLower(addr)]
			if h == nil {
				return nil, fmt.Errorf("test dialer: no host %s", addr)
			}
			return dialer.DialContext(ctx, network, h.srv.Listener.Addr().String())
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := New("https://kv.vault.test", staticCred{}, Options{Transport: &http.Client{Transport: tr},
		Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const vaultHost = "kv.vault.test:443"

type item struct {
	ID          string            `json:"id"`
	ContentType string            `json:"contentType,omitempty"`
	Attributes  map[string]any    `json:"attributes,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

func secretItem(name string) item { return item{ID: "https://kv.vault.test/secrets/" + name} }

func writePage(w http.ResponseWriter, items []item, next string) {
	body := map[string]any{"value": items, "nextLink": nil}
	if next != "" {
		body["nextLink"] = next
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func nextLink(n int) string {
	return "https://kv.vault.test:443/secrets?api-version=7.4&$skiptoken=" + strconv.Itoa(n) + "&maxresults=25"
}

var everything = ListQuery{Selectors: []Selector{{}}}

// TestListPinnedToVaultHost: a nextLink that names another host (or scheme, or port) fails the
// list before any request is sent there, so the vault's token never leaves; the vault's own host
// in any case and with its default port explicit (as Key Vault writes it) is followed.
func TestListPinnedToVaultHost(t *testing.T) {
	t.Parallel()
	for _, link := range []string{
		"https://evil.test/secrets?api-version=7.4",
		"https://kv.vault.test.evil.test/secrets?api-version=7.4",
		"https://kv.vault.test:8443/secrets?api-version=7.4",
		"http://kv.vault.test/secrets?api-version=7.4",
	} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			other := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, _ int) { writePage(w, []item{secretItem("stolen")}, "") })
			vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, _ int) { writePage(w, []item{secretItem("a")}, link) })
			c := testClient(t, map[string]*fakeHost{vaultHost: vault, "evil.test:443": other, "kv.vault.test.evil.test:443": other,
				"kv.vault.test:8443": other, "kv.vault.test:80": other})
			_, err := c.ListSecrets(context.Background(), everything)
			if KindOf(err) != KindInternal || !strings.Contains(fmt.Sprint(err), "Key Vault's answer pointed the next page at another host") {
				t.Errorf("err = %v", err)
			}
			if n, a := other.requests.Load(), other.withAuth.Load(); n != 0 || a != 0 {
				t.Errorf("the other host got %d requests, %d with an Authorization header", n, a)
			}
			if n := vault.withAuth.Load(); n != 1 {
				t.Errorf("the vault got %d authorized requests, want 1 (no retry)", n)
			}
		})
	}
	t.Run("same host", func(t *testing.T) {
		t.Parallel()
		vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, n int) {
			switch n {
			case 0:
				writePage(w, []item{secretItem("a")}, "https://KV.Vault.Test:443/secrets?api-version=7.4&$skiptoken=1")
			case 1:
				writePage(w, []item{secretItem("b")}, "https://kv.vault.test/secrets?api-version=7.4&$skiptoken=2")
			default:
				writePage(w, []item{secretItem("c")}, "")
			}
		})
		c := testClient(t, map[string]*fakeHost{vaultHost: vault})
		got, err := c.ListSecrets(context.Background(), everything)
		if err != nil || len(got) != 3 {
			t.Errorf("got %v, %v", got, err)
		}
	})
}

// TestListBounds: endless empty pages, endless full pages, endless one-item pages and large pages
// each stop at their bound, with an error naming it, after as many requests as the bound allows.
func TestListBounds(t *testing.T) {
	t.Parallel()
	pad := strings.Repeat("p", 3<<20) // 3 MiB: under the response ceiling
	tests := []struct {
		name     string
		page     func(n int) []item
		extra    string // padding of every page
		want     string
		requests int
	}{
		{"empty pages", func(int) []item { return nil }, "", "100 empty list pages in a row", MaxEmptyPages},
		{"full pages", func(n int) []item {
			items := make([]item, 25)
			for i := range items {
				items[i] = secretItem(fmt.Sprintf("s%d-%d", n, i))
			}
			return items
		}, "", "more than 25000 items (MaxListItems)", MaxListItems/25 + 1},
		{"one-item pages", func(n int) []item { return []item{secretItem(fmt.Sprintf("s%d", n))} }, "", "past 2000 pages (MaxListPages)", MaxListPages},
		{"3 MiB pages", func(n int) []item { return []item{secretItem(fmt.Sprintf("s%d", n))} }, pad, "more than 64 MiB (MaxListBytes)", MaxListBytes/len(pad) + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, n int) {
				if tt.extra == "" {
					writePage(w, tt.page(n), nextLink(n+1))
					return
				}
				// A field the SDK skips, written as is: the bytes count, whatever they hold.
				b, _ := json.Marshal(map[string]any{"value": tt.page(n), "nextLink": nextLink(n + 1)})
				_, _ = w.Write(b[:len(b)-1])
				_, _ = w.Write([]byte(`,"padding":"` + tt.extra + `"}`))
			})
			c := testClient(t, map[string]*fakeHost{vaultHost: vault})
			_, err := c.ListSecrets(context.Background(), everything)
			if KindOf(err) != KindInvalidArgument || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
			if n := int(vault.withAuth.Load()); n != tt.requests {
				t.Errorf("%d pages requested, want %d", n, tt.requests)
			}
		})
	}
	t.Run("version list", func(t *testing.T) {
		t.Parallel()
		vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, n int) { writePage(w, nil, nextLink(n+1)) })
		c := testClient(t, map[string]*fakeHost{vaultHost: vault})
		if _, err := c.SecretVersions(context.Background(), "s"); !strings.Contains(fmt.Sprint(err), "(MaxEmptyPages)") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestResponseCeiling: a body past MaxResponseBytes fails while it is read, whether or not it
// announces its length, and is not retried.
func TestResponseCeiling(t *testing.T) {
	t.Parallel()
	huge := `{"value":"` + strings.Repeat("v", MaxResponseBytes) + `","id":"https://kv.vault.test/secrets/s/1"}`
	for _, announced := range []bool{true, false} {
		t.Run(fmt.Sprintf("Content-Length %v", announced), func(t *testing.T) {
			t.Parallel()
			vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				if announced {
					w.Header().Set("Content-Length", strconv.Itoa(len(huge)))
				}
				w.Header().Set("Content-Type", "application/json")
				for i := 0; i < len(huge); i += 64 << 10 { // in chunks: no Content-Length unless set
					_, _ = w.Write([]byte(huge[i:min(i+64<<10, len(huge))]))
					w.(http.Flusher).Flush()
				}
			})
			c := testClient(t, map[string]*fakeHost{vaultHost: vault})
			_, err := c.GetSecret(context.Background(), "s", "")
			if KindOf(err) != KindInternal || !strings.Contains(fmt.Sprint(err), "the 4 MiB the provider reads in one response (MaxResponseBytes)") {
				t.Errorf("err = %v", err)
			}
			if n := vault.withAuth.Load(); n != 1 {
				t.Errorf("%d requests, want 1 (no retry)", n)
			}
		})
	}
	// The largest legitimate answer (see MaxResponseBytes) passes: 25 items with 15 tags of
	// maximum size, every character escaped.
	t.Run("largest page", func(t *testing.T) {
		t.Parallel()
		tags := map[string]string{}
		for i := range 15 {
			tags[fmt.Sprintf("%02d", i)+strings.Repeat("\u0001", 510)] = strings.Repeat("\u0001", 256)
		}
		var items []item
		for i := range 25 {
			it := secretItem(fmt.Sprintf("s%02d", i))
			it.Tags, it.ContentType = tags, strings.Repeat("\u0001", 255)
			items = append(items, it)
		}
		var size atomic.Int64
		vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
			b, _ := json.Marshal(map[string]any{"value": items, "nextLink": nil})
			size.Store(int64(len(b)))
			_, _ = w.Write(b)
		})
		c := testClient(t, map[string]*fakeHost{vaultHost: vault})
		got, err := c.ListSecrets(context.Background(), everything)
		if err != nil || len(got) != 25 {
			t.Errorf("got %d matches, %v", len(got), err)
		}
		t.Logf("largest legitimate page: %d bytes (MaxResponseBytes %d)", size.Load(), MaxResponseBytes)
	})
}

// TestListFilters: a listing keeps only the current objects that match a selector, each once,
// with the indexes of the selectors that matched it.
func TestListFilters(t *testing.T) {
	t.Parallel()
	now := time.Now().Unix()
	prod := map[string]string{"env": "prod", "team": "a"}
	pages := [][]item{
		{
			{ID: "https://kv.vault.test/secrets/app-1", Tags: prod},
			{ID: "https://kv.vault.test/secrets/app-2", Tags: map[string]string{"env": "dev"}},
			{ID: "https://kv.vault.test/secrets/web", Tags: prod},
		},
		{}, // an empty page in the middle
		{
			{ID: "https://kv.vault.test/secrets/app-off", Attributes: map[string]any{"enabled": false}},
			{ID: "https://kv.vault.test/secrets/app-old", Attributes: map[string]any{"exp": now - 10}},
			{ID: "https://kv.vault.test/secrets/app-soon", Attributes: map[string]any{"nbf": now + 3600}},
			{ID: "https://kv.vault.test/secrets/app-now", Attributes: map[string]any{"enabled": true, "nbf": now - 10, "exp": now + 3600}},
			{ID: "https://kv.vault.test/secrets/app-1", Tags: prod}, // listed twice
			{ID: "https://kv.vault.test/secrets/other"},
		},
	}
	vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		next := ""
		if n+1 < len(pages) {
			next = nextLink(n + 1)
		}
		writePage(w, pages[n], next)
	})
	c := testClient(t, map[string]*fakeHost{vaultHost: vault})
	q := ListQuery{Selectors: []Selector{{NamePrefix: "app-"}, {Tags: map[string]string{"env": "prod"}}, {NamePrefix: "x"}}, MaxPerSelector: 10}
	got, err := c.ListSecrets(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := "app-1[0 1] app-2[0] web[1] app-now[0]"
	var parts []string
	for _, m := range got {
		parts = append(parts, fmt.Sprintf("%s%v", m.Name, m.Selectors))
	}
	if strings.Join(parts, " ") != want {
		t.Errorf("matches %s, want %s", strings.Join(parts, " "), want)
	}
}

// TestMaxPerSelector: the listing stops as soon as a selector passes its bound, with an error
// that carries the selector's index and the bound.
func TestMaxPerSelector(t *testing.T) {
	t.Parallel()
	vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		writePage(w, []item{secretItem(fmt.Sprintf("b-%d", n)), secretItem(fmt.Sprintf("a-%d", n))}, nextLink(n+1))
	})
	c := testClient(t, map[string]*fakeHost{vaultHost: vault})
	q := ListQuery{Selectors: []Selector{{NamePrefix: "x-"}, {NamePrefix: "b-"}, {NamePrefix: "a-"}}, MaxPerSelector: 3}
	_, err := c.ListSecrets(context.Background(), q)
	var tm *TooManyMatchesError
	if KindOf(err) != KindInvalidArgument || !errors.As(err, &tm) || tm.Selector != 1 || tm.Max != 3 {
		t.Fatalf("err = %v (%+v)", err, tm)
	}
	if n := vault.withAuth.Load(); n != 4 {
		t.Errorf("%d pages requested, want 4: the list stops at the 4th match of b-", n)
	}
}

// TestPacer: the pacer is called before every page after the first, and its error ends the list.
func TestPacer(t *testing.T) {
	t.Parallel()
	vault := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		next := ""
		if n < 4 {
			next = nextLink(n + 1)
		}
		writePage(w, []item{secretItem(fmt.Sprintf("s%d", n))}, next)
	})
	c := testClient(t, map[string]*fakeHost{vaultHost: vault})
	var mu sync.Mutex
	var calls []int32
	ctx := WithPacer(context.Background(), func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, vault.withAuth.Load())
		return nil
	})
	got, err := c.ListSecrets(ctx, everything)
	if err != nil || len(got) != 5 {
		t.Fatalf("got %v, %v", got, err)
	}
	if fmt.Sprint(calls) != "[1 2 3 4]" {
		t.Errorf("pacer called after pages %v, want [1 2 3 4]: once before each page after the first", calls)
	}
	endless := newFakeHost(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		writePage(w, []item{secretItem(fmt.Sprintf("s%d", n))}, nextLink(n+1))
	})
	c = testClient(t, map[string]*fakeHost{vaultHost: endless})
	stop := &Error{Kind: KindUnavailable, Detail: "rate limit"}
	ctx = WithPacer(context.Background(), func(context.Context) error { return stop })
	if _, err := c.ListSecrets(ctx, everything); !errors.Is(err, stop) {
		t.Errorf("err = %v, want the pacer's", err)
	}
	if n := endless.withAuth.Load(); n != 1 {
		t.Errorf("%d pages requested, want 1: the pacer refused the second", n)
	}
}

func TestListQueryKey(t *testing.T) {
	t.Parallel()
	a := ListQuery{Selectors: []Selector{{NamePrefix: "a", Tags: map[string]string{"x": "1", "y": "2"}}, {NamePrefix: "b"}}, MaxPerSelector: 5}
	b := ListQuery{Selectors: []Selector{{NamePrefix: "a", Tags: map[string]string{"y": "2", "x": "1"}}, {NamePrefix: "b"}}, MaxPerSelector: 5}
	if a.Key() != b.Key() {
		t.Errorf("same query, keys %q and %q", a.Key(), b.Key())
	}
	for _, other := range []ListQuery{
		{Selectors: []Selector{{NamePrefix: "b"}, {NamePrefix: "a", Tags: map[string]string{"x": "1", "y": "2"}}}, MaxPerSelector: 5},
		{Selectors: a.Selectors, MaxPerSelector: 6},
		{Selectors: []Selector{{NamePrefix: "a", Tags: map[string]string{"x": "1,tag=\"y\"=\"2\""}}, {NamePrefix: "b"}}, MaxPerSelector: 5},
	} {
		if other.Key() == a.Key() {
			t.Errorf("different queries share the key %q", a.Key())
		}
	}
}
