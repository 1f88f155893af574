package provider

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/metrics"
)

// objectRequests records ObserveObjectRequest calls as "type/name error".
type objectRequests struct {
	metrics.Nop
	mu   sync.Mutex
	seen []string
}

func (r *objectRequests) ObserveObjectRequest(typ, name, class string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, typ+"/"+name+" "+class)
}

func (r *objectRequests) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.seen
	r.seen = nil
	sort.Strings(out)
	return out
}

// TestObjectRequestsObserved: keyvault_request sees each read sent to Key Vault once (a GET, a
// versions listing), with a class for a failure; a selection's listing, a kept result and a read
// joined in flight are not observed.
func TestObjectRequestsObserved(t *testing.T) {
	t.Parallel()
	now := time.Now()
	f := &fakeVault{secrets: map[string][]fakeVersion{
		"a":     {{"va", "A", now, true}},
		"h":     {{"v1", "one", now.Add(-time.Hour), true}, {"v2", "two", now, true}},
		"sel-x": {{"vx", "X", now, true}},
	}, denied: map[string]bool{"b": true}, delay: 20 * time.Millisecond}
	rec := &objectRequests{}
	p, _ := newFakeProvider(f, Options{Metrics: rec, Sharing: SharingOptions{ResultTTL: time.Minute}})
	selection := config.Object{Type: config.TypeSecret, NamePrefix: "sel-", Alias: "sel", Format: config.FormatPEM, Encoding: config.EncodingUTF8, Mode: 0o644}
	ok := mountConfig(secret("a"), secret("h", func(o *config.Object) { o.History = 2 }), selection)

	// Three mounts at once: one reads, the others join it.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := p.Mount(context.Background(), ok); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	want := []string{"secret/a ", "secret/h ", "secret/h ", "secret/h ", "secret/sel-x "} // h: its versions, then two versions
	if diff := cmp.Diff(want, rec.take()); diff != "" {
		t.Errorf("concurrent mounts (-want +got):\n%s", diff)
	}
	if _, err := p.Mount(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("kept results were observed as requests: %q", got)
	}

	if _, err := p.Mount(context.Background(), mountConfig(secret("b"), secret("missing"))); err == nil {
		t.Fatal("mount succeeded")
	}
	want = []string{"secret/b permission_denied", "secret/missing not_found"}
	if diff := cmp.Diff(want, rec.take()); diff != "" {
		t.Errorf("failed reads (-want +got):\n%s", diff)
	}
}

func TestErrorClass(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&keyvault.Error{Kind: keyvault.KindNotFound, Status: 404, Detail: "404 Not Found: value=hunter2"}, metrics.ErrorNotFound},
		{&keyvault.Error{Kind: keyvault.KindPermissionDenied, Status: 403}, metrics.ErrorPermissionDenied},
		{&keyvault.Error{Kind: keyvault.KindUnauthenticated, Status: 401}, metrics.ErrorUnauthenticated},
		{&keyvault.Error{Kind: keyvault.KindUnavailable, Status: 429}, metrics.ErrorThrottled},
		{&keyvault.Error{Kind: keyvault.KindUnavailable, Status: 503}, metrics.ErrorUnavailable},
		{&keyvault.Error{Kind: keyvault.KindDeadlineExceeded}, metrics.ErrorDeadlineExceeded},
		{&keyvault.Error{Kind: keyvault.KindInvalidArgument}, metrics.ErrorInvalidArgument},
		{&keyvault.Error{Kind: keyvault.KindResourceExhausted}, metrics.ErrorResourceExhausted},
		{&keyvault.Error{Kind: keyvault.KindInternal}, metrics.ErrorInternal},
		{errors.New("some error text"), metrics.ErrorInternal},
		{context.DeadlineExceeded, metrics.ErrorDeadlineExceeded},
	} {
		if got := errorClass(tt.err); got != tt.want {
			t.Errorf("errorClass(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
