package provider

import (
	"context"
	"sync"

	"github.com/akv-csi/provider/pkg/keyvault"
)

// mountReads makes each distinct read of one mount happen once, whatever --result-cache-ttl is:
// entries that name the same object (other JSON keys, formats, aliases, a PFX password secret)
// share its one read, and its answer, error included. It lives as long as the mount.
type mountReads struct {
	next keyvault.Client

	mu    sync.Mutex
	reads map[string]*mountRead
}

type mountRead struct {
	done chan struct{}
	val  any
	err  error
}

func newMountReads(next keyvault.Client) *mountReads {
	return &mountReads{next: next, reads: map[string]*mountRead{}}
}

// once runs fetch for the first caller of key and gives every caller its result.
func once[T any](ctx context.Context, m *mountReads, key string, fetch func(context.Context) (T, error)) (T, error) {
	var zero T
	m.mu.Lock()
	r := m.reads[key]
	if r == nil {
		r = &mountRead{done: make(chan struct{}), err: &keyvault.Error{Kind: keyvault.KindInternal, Detail: "internal error in the provider (logged with its stack)"}}
		m.reads[key] = r
		m.mu.Unlock()
		defer close(r.done) // even if fetch panics (the mount recovers it), so no caller waits forever
		v, err := fetch(ctx)
		r.val, r.err = v, err
		return v, err
	}
	m.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return zero, keyvault.AsError(ctx.Err())
	}
	if r.err != nil {
		return zero, r.err
	}
	return r.val.(T), nil
}

func (m *mountReads) GetSecret(ctx context.Context, name, version string) (keyvault.Secret, error) {
	return once(ctx, m, readKey("secret", name, version), func(ctx context.Context) (keyvault.Secret, error) {
		return m.next.GetSecret(ctx, name, version)
	})
}

func (m *mountReads) GetKey(ctx context.Context, name, version string) (keyvault.Key, error) {
	return once(ctx, m, readKey("key", name, version), func(ctx context.Context) (keyvault.Key, error) {
		return m.next.GetKey(ctx, name, version)
	})
}

func (m *mountReads) GetCertificate(ctx context.Context, name, version string) (keyvault.Certificate, error) {
	return once(ctx, m, readKey("cert", name, version), func(ctx context.Context) (keyvault.Certificate, error) {
		return m.next.GetCertificate(ctx, name, version)
	})
}

func (m *mountReads) SecretVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return once(ctx, m, readKey("secret-versions", name, ""), func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return m.next.SecretVersions(ctx, name)
	})
}

func (m *mountReads) KeyVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return once(ctx, m, readKey("key-versions", name, ""), func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return m.next.KeyVersions(ctx, name)
	})
}

func (m *mountReads) CertificateVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return once(ctx, m, readKey("cert-versions", name, ""), func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return m.next.CertificateVersions(ctx, name)
	})
}

// ListSecrets lists once per query: every selection entry of a mount over one vault and type
// asks the same query (all of them), so the mount lists that vault's secrets once.
func (m *mountReads) ListSecrets(ctx context.Context, q keyvault.ListQuery) ([]keyvault.Match, error) {
	return once(ctx, m, readKey("secret-list", q.Key(), ""), func(ctx context.Context) ([]keyvault.Match, error) {
		return m.next.ListSecrets(ctx, q)
	})
}

func (m *mountReads) ListCertificates(ctx context.Context, q keyvault.ListQuery) ([]keyvault.Match, error) {
	return once(ctx, m, readKey("cert-list", q.Key(), ""), func(ctx context.Context) ([]keyvault.Match, error) {
		return m.next.ListCertificates(ctx, q)
	})
}
