package keyvault

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Every answer of Key Vault is read as if an attacker wrote it: the bounds below keep what one
// answer, and one listing, may cost.

// MaxListItems bounds the items one list may hold (a version list, or a vault's secrets or
// certificates): past it the list fails rather than growing without end. Key Vault has no limit on
// the objects of a vault; 25,000 is far beyond what one mount selects from.
const MaxListItems = 25000

// MaxListPages bounds the pages of one list. Key Vault pages hold at most 25 items (the default
// and the most maxresults allows) and may hold fewer, or none: a listing of MaxListItems takes
// 1,000 full pages, and 2,000 leaves room for pages that come back short. A list whose pages hold
// one item each stops after 2,000 requests instead of 25,000 (each takes a turn at the vault's
// rate limit: 10 s at the default 200 reads/s).
const MaxListPages = 2000

// MaxEmptyPages bounds the empty pages in a row of one list. Key Vault may answer a page with no
// item and a nextLink (seen on the first page of a list: the next one holds the items), but a run
// of empty pages makes no progress, and an endless one would page until MaxListPages: 100 pages
// (half a second of the vault's default rate limit) is far more than a listing that progresses
// needs, and stops an endless run within the vault's default burst.
const MaxEmptyPages = 100

// MaxListBytes bounds the response bytes of one list, all pages and retries together. A listing
// of 25,000 objects with a few short tags is about 10 MiB; one whose objects all carry 15
// maximum-size tags (12 KB an item) would be 300 MiB, which no selection needs read on every
// mount and every rotation poll: past 64 MiB (about 5,000 such objects) the list fails.
const MaxListBytes = 64 << 20

// MaxResponseBytes bounds the body of any single Key Vault response, enforced while it is read,
// so that a huge body fails instead of being buffered.
//
// The largest answer Key Vault gives is a list page: 25 items, each with 15 tags (names of at
// most 512 characters, values of at most 256). JSON-escaped as \uXXXX, a character is 6 bytes, so
// an item's tags are at most 15 x (512+256) x 6 = 69,120 bytes, plus its id (at most about 200
// bytes), content type (255 characters: 1,530 bytes escaped) and attributes (about 200 bytes):
// 71,100 bytes. 25 of them and a nextLink (about 1 KB) are 1.78 MB (1.7 MiB). A single secret is
// smaller (a value of at most 25 KB is 150 KB escaped, and the same tags). 4 MiB is more than
// twice the largest legitimate answer.
const MaxResponseBytes = 4 << 20

// nonRetriable marks a failure that retrying the same request cannot cure, so azcore's retry
// policy returns it at once (it looks for this method anywhere in the error's chain).
type nonRetriable struct{ error }

func (nonRetriable) NonRetriable() {}

func (e nonRetriable) Unwrap() error { return e.error }

// pinHostPolicy refuses any request whose scheme or host differs from the vault URL's, before it
// is sent: azcore follows a list's nextLink verbatim, host included, and would send it the
// vault's bearer token. It runs per call, before the retry and authentication policies, so no
// token is even asked for.
type pinHostPolicy struct {
	scheme, host string // canonical: lower case, with the port
}

func newPinHostPolicy(vaultURL string) (pinHostPolicy, error) {
	u, err := url.Parse(vaultURL)
	if err != nil || u.Host == "" {
		return pinHostPolicy{}, &Error{Kind: KindInvalidArgument, Detail: fmt.Sprintf("%q is not a vault URL", vaultURL)}
	}
	scheme, host := canonicalHost(u)
	return pinHostPolicy{scheme: scheme, host: host}, nil
}

// canonicalHost is u's scheme and host:port in lower case, with the scheme's default port made
// explicit: Key Vault's nextLinks name https://<vault>.vault.azure.net:443 for a vault URL without
// a port.
func canonicalHost(u *url.URL) (scheme, host string) {
	scheme = strings.ToLower(u.Scheme)
	h, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme, h + ":" + port
}

func (p pinHostPolicy) Do(req *policy.Request) (*http.Response, error) {
	scheme, host := canonicalHost(req.Raw().URL)
	if scheme != p.scheme || host != p.host {
		return nil, &Error{Kind: KindInternal, Err: nonRetriable{fmt.Errorf("request to %s://%s refused", scheme, host)},
			Detail: fmt.Sprintf("Key Vault's answer pointed the next page at another host (%s://%s, not the vault's %s://%s); the provider sends nothing there",
				scheme, truncate(host, 100), p.scheme, p.host)}
	}
	return req.Next()
}

// listBudget counts the response bytes of one listing (see MaxListBytes).
type listBudget struct{ used atomic.Int64 }

type listBudgetKey struct{}

func withListBudget(ctx context.Context) (context.Context, *listBudget) {
	b := &listBudget{}
	return context.WithValue(ctx, listBudgetKey{}, b), b
}

// ReadCharge counts n more response bytes of a caller's reads; an error fails the read.
type ReadCharge func(ctx context.Context, n int64) error

type readChargeKey struct{}

// WithReadCharge makes the Key Vault responses read under ctx call charge with the bytes of their
// bodies as they arrive, so a caller can bound what it holds while it reads (the provider's
// per-mount budget). A list page is charged while it is read and handled, and handed back (a
// negative charge) when the list returns: only its matches are kept.
func WithReadCharge(ctx context.Context, charge ReadCharge) context.Context {
	return context.WithValue(ctx, readChargeKey{}, charge)
}

// boundedTransport enforces MaxResponseBytes on every response body, MaxListBytes on the bodies
// of one listing, and the caller's ReadCharge on the others, while they are read.
type boundedTransport struct{ next policy.Transporter }

func (t boundedTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.next.Do(req)
	if err != nil || resp == nil || resp.Body == nil {
		return resp, err
	}
	if resp.ContentLength > MaxResponseBytes {
		_ = resp.Body.Close()
		return nil, tooLarge(resp.ContentLength)
	}
	ctx := req.Context()
	budget, _ := ctx.Value(listBudgetKey{}).(*listBudget)
	charge, _ := ctx.Value(readChargeKey{}).(ReadCharge)
	resp.Body = &boundedBody{ctx: ctx, body: resp.Body, budget: budget, charge: charge}
	return resp, nil
}

func tooLarge(n int64) *Error {
	what := "more than"
	if n > 0 {
		what = fmt.Sprintf("%d bytes, more than", n)
	}
	return &Error{Kind: KindInternal, Err: nonRetriable{fmt.Errorf("response body over %d bytes", MaxResponseBytes)},
		Detail: fmt.Sprintf("Key Vault's answer is %s the %d MiB the provider reads in one response (MaxResponseBytes); no Key Vault object is that large", what, MaxResponseBytes>>20)}
}

// boundedBody fails a read that takes the body past MaxResponseBytes, the listing past
// MaxListBytes, or the caller's ReadCharge.
type boundedBody struct {
	ctx    context.Context
	body   io.ReadCloser
	n      int64
	budget *listBudget
	charge ReadCharge
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.n += int64(n)
	if b.n > MaxResponseBytes {
		return n, tooLarge(0)
	}
	if b.charge != nil && n > 0 {
		if err := b.charge(b.ctx, int64(n)); err != nil {
			return n, nonRetriable{err}
		}
	}
	if b.budget != nil && b.budget.used.Add(int64(n)) > MaxListBytes {
		return n, &Error{Kind: KindInvalidArgument, Err: nonRetriable{fmt.Errorf("listing over %d bytes", MaxListBytes)},
			Detail: fmt.Sprintf("Key Vault's list answered more than %d MiB (MaxListBytes); the provider reads no more: the vault holds too many objects, or too large tags, to list on every mount", MaxListBytes>>20)}
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.body.Close() }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
