package provider

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/klog/v2"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/metrics"
)

// SharingOptions tune how reads are shared and paced.
type SharingOptions struct {
	// ResultTTL keeps successful reads of one identity for this long, so the replicas of a
	// workload mounting together make one read. 0 disables it. It delays a rotation by at most
	// this much.
	ResultTTL time.Duration
	// VaultRateLimit is the most reads per second sent to one vault by all mounts together
	// (default 200), with VaultBurst (default 400) allowed at once.
	VaultRateLimit float64
	VaultBurst     int
	// MaxThrottleRetries bounds the retries of a throttled read (default 6); the driver's deadline
	// bounds them too.
	MaxThrottleRetries int
	// ThrottleBackoff is the first wait after a 429 without Retry-After (default 500ms); it doubles
	// with jitter on each retry, up to 16s.
	ThrottleBackoff time.Duration
	// ResultCacheMaxBytes is the ceiling on the bytes of all kept results (default 32 MiB); a
	// read that would pass it is not kept.
	ResultCacheMaxBytes int64
}

func (o *SharingOptions) defaults() {
	if o.VaultRateLimit <= 0 {
		o.VaultRateLimit = 200
	}
	if o.VaultBurst <= 0 {
		o.VaultBurst = 400
	}
	if o.MaxThrottleRetries <= 0 {
		o.MaxThrottleRetries = 6
	}
	if o.ThrottleBackoff <= 0 {
		o.ThrottleBackoff = 500 * time.Millisecond
	}
	if o.ResultCacheMaxBytes <= 0 {
		o.ResultCacheMaxBytes = 32 << 20
	}
}

// sharedClient wraps the Key Vault client of ONE identity for ONE vault, so nothing it shares or
// keeps can reach another identity: identical reads in flight are joined, successful results are
// kept for ResultTTL, every request waits for the vault's rate limiter, and a 429 is retried with
// backoff within the caller's deadline.
//
// Freshness: a caller may carry a "not before" time (a rotation mount: the time it arrived). It
// then takes neither a kept result nor a read in flight that started before that time.
type sharedClient struct {
	next   keyvault.Client
	opts   SharingOptions
	vault  *vaultLimiter
	budget *byteBudget
	rec    metrics.Recorder
	// proven is set once the vault served this identity (a value, a NotFound or a disabled
	// object: it has access); refused once the vault refused it (401, 403) and until it serves
	// it. A refused identity's reads are paced by its own probation limiter and then by the
	// vault's small probation budget, so identities the vault refuses cannot use up the budget of
	// the ones it serves, nor starve a new identity's first reads (which take the main budget).
	proven, refused atomic.Bool
	probation       *rate.Limiter // this identity's own, at this vault
	// onProven and onRefused tell the client cache (which keeps proven identities and refusals).
	onProven, onRefused func()
	lastUsed            time.Time // guarded by the client cache's lock

	mu      sync.Mutex
	flights map[string]*flight
	kept    map[string]*keptResult

	// One SDK client per object type answers Key Vault's 401 challenge on its first request; reads
	// sent before that completes would each be challenged. So each type's first read goes alone.
	first [3]chan struct{}
	ready [3]atomic.Bool
}

// SDK clients: one per object type.
const (
	secretsClient = iota
	keysClient
	certsClient
)

// flight is one read in progress; its fields other than started and done are set before done closes.
type flight struct {
	started time.Time
	done    chan struct{}
	val     any
	err     error
}

type keptResult struct {
	value   any
	started time.Time // when the read that produced it was sent
	until   time.Time
	size    int64
}

// Probation of one refused identity at one vault: a read per second, 3 at once.
const (
	identityProbationRate  = 1
	identityProbationBurst = 3
)

func newSharedClient(next keyvault.Client, vault *vaultLimiter, budget *byteBudget, o SharingOptions, rec metrics.Recorder) *sharedClient {
	c := &sharedClient{next: next, opts: o, vault: vault, budget: budget, rec: rec,
		probation: rate.NewLimiter(identityProbationRate, identityProbationBurst), onProven: func() {}, onRefused: func() {},
		flights: map[string]*flight{}, kept: map[string]*keptResult{}}
	for i := range c.first {
		c.first[i] = make(chan struct{}, 1)
	}
	return c
}

// notBeforeKey carries a mount's freshness bound through the keyvault.Client interface.
type notBeforeKey struct{}

// withNotBefore makes reads under ctx take no result whose read started before t.
func withNotBefore(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, notBeforeKey{}, t)
}

func notBefore(ctx context.Context) time.Time {
	t, _ := ctx.Value(notBeforeKey{}).(time.Time)
	return t
}

// firstRead makes the first read of an SDK client go alone: it returns at once when the client has
// answered its challenge, else waits for the turn, and the returned release marks it ready.
func (c *sharedClient) firstRead(ctx context.Context, client int) (release func(), err error) {
	if c.ready[client].Load() {
		return func() {}, nil
	}
	select {
	case c.first[client] <- struct{}{}:
	case <-ctx.Done():
		return nil, keyvault.AsError(ctx.Err())
	}
	if c.ready[client].Load() {
		<-c.first[client]
		return func() {}, nil
	}
	return func() { c.ready[client].Store(true); <-c.first[client] }, nil
}

// alone wraps a read so that it waits for its SDK client's first read.
func alone[T any](c *sharedClient, client int, fetch func(context.Context) (T, error)) func(context.Context) (T, error) {
	return func(ctx context.Context) (T, error) {
		release, err := c.firstRead(ctx, client)
		if err != nil {
			var zero T
			return zero, err
		}
		defer release()
		return fetch(ctx)
	}
}

// read serves one read by key through the result cache, the in-flight reads and the throttle loop.
// The read that goes to Key Vault is recorded as obj (observed).
func read[T any](ctx context.Context, c *sharedClient, key string, obj objectRead, fetch func(context.Context) (T, error)) (T, error) {
	nb := notBefore(ctx)
	if v, ok := c.lookup(key, nb); ok {
		c.rec.ObserveRead("hit")
		return v.(T), nil
	}
	for {
		v, led, err := c.join(ctx, key, nb, func(fctx context.Context) (any, error) { return observed(fctx, c, obj, fetch) })
		var zero T
		switch {
		case err == nil:
			if led {
				c.rec.ObserveRead("miss")
			} else {
				c.rec.ObserveRead("shared")
			}
			return v.(T), nil
		case !led && ctx.Err() == nil && keyvault.KindOf(err) == keyvault.KindDeadlineExceeded:
			continue // the read we joined ran out of its own caller's time, not ours: read again
		default:
			return zero, err
		}
	}
}

// join runs fetch once for the callers of key at the same time: it joins a read in flight that
// started at or after nb, or starts one. led reports whether this caller started it.
//
// The leader runs the read on its own goroutine, not on a new one: a goroutine per read cost
// creating it, growing its stack and two more hand-offs between goroutines (an eighth of the
// provider's CPU with 64 mounts at once). The read runs with the leader's deadline but not its
// cancellation, so those who joined never see an error that is only the leader's: a cancelled
// leader returns when the read ends, by its deadline at the latest.
func (c *sharedClient) join(ctx context.Context, key string, nb time.Time, fetch func(context.Context) (any, error)) (any, bool, error) {
	c.mu.Lock()
	f := c.flights[key]
	if f != nil && !f.started.Before(nb) {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.val, false, f.err
		case <-ctx.Done():
			return nil, false, keyvault.AsError(ctx.Err())
		}
	}
	f = &flight{started: time.Now(), done: make(chan struct{})}
	c.flights[key] = f // later callers join the newest read
	c.mu.Unlock()

	fctx := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		fctx, cancel = context.WithDeadline(fctx, d)
		defer cancel()
	}
	_ = growStack()
	f.val, f.err = recovered(fctx, fetch)
	c.mu.Lock()
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	if f.err == nil {
		c.keepLocked(key, f.val, f.started)
	}
	c.mu.Unlock()
	close(f.done)
	return f.val, true, f.err
}

// growStack makes the calling goroutine's stack at least 32 KiB at once. A read goes through the
// SDK's pipeline of policies, net/http and TLS, which needs about that much: grown the usual way,
// by doubling from the runtime's initial size, the stack of a new mount's goroutine was copied
// three or four times per read, a quarter of the CPU the read spent in the provider. Growing it
// before the read, while the stack is still shallow, copies it once.
//
//go:noinline
func growStack() byte {
	var buf [16 << 10]byte
	return buf[rand.IntN(len(buf))] //nolint:gosec // an index the compiler cannot know keeps buf on the stack, not a secret
}

// recovered runs fetch, turning a panic into an Internal error of this read (a panic on a
// goroutine of its own would end the process, and every mount in flight with it).
func recovered(ctx context.Context, fetch func(context.Context) (any, error)) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "panic in a Key Vault read", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			v, err = nil, &keyvault.Error{Kind: keyvault.KindInternal, Detail: "internal error in the provider (logged with its stack)"}
		}
	}()
	return fetch(ctx)
}

// throttled paces a read by the vault's rate limit and retries it after a 429: after the
// Retry-After the vault gave, or with exponential backoff and jitter when it gave none. It never
// waits past the deadline: a 429 that would outlive it fails at once as Unavailable.
func throttled[T any](ctx context.Context, c *sharedClient, fetch func(context.Context) (T, error)) (T, error) {
	var zero T
	backoff := c.opts.ThrottleBackoff
	for attempt := 1; ; attempt++ {
		if err := c.wait(ctx); err != nil {
			return zero, err
		}
		v, err := fetch(ctx)
		kvErr := keyvault.AsError(err)
		switch {
		case err == nil || kvErr.Absent():
			c.refused.Store(false)
			if c.proven.CompareAndSwap(false, true) {
				c.onProven()
			}
		case kvErr.Status == 401 || kvErr.Status == 403:
			if !c.proven.Load() && !c.refused.Swap(true) {
				c.onRefused()
			}
		}
		if err == nil || kvErr.Status != 429 {
			return v, err
		}
		delay := kvErr.RetryAfter
		if delay <= 0 {
			delay = time.Duration(float64(backoff) * (0.5 + rand.Float64())) //nolint:gosec // jitter, not a secret: 0.5x-1.5x
			backoff = min(2*backoff, 16*time.Second)
		}
		if deadline, ok := ctx.Deadline(); ok && time.Now().Add(delay).After(deadline) {
			return zero, &keyvault.Error{Kind: keyvault.KindUnavailable, Status: 429, Code: kvErr.Code, Err: err,
				Detail: fmt.Sprintf("429 Too Many Requests: Key Vault throttled this vault after %d attempt(s) and the next retry (in %v) would pass the driver's deadline",
					attempt, delay.Round(time.Millisecond))}
		}
		if attempt > c.opts.MaxThrottleRetries {
			return zero, &keyvault.Error{Kind: keyvault.KindUnavailable, Status: 429, Code: kvErr.Code, Err: err,
				Detail: fmt.Sprintf("429 Too Many Requests: Key Vault still throttled this vault after %d attempts", attempt)}
		}
		c.rec.ObserveRetry()
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return zero, keyvault.AsError(ctx.Err())
		}
	}
}

// wait takes one request's turn at the vault's rate limiters: the main budget, or for an identity
// the vault refused and has not served since, its own probation limiter and then the vault's
// probation budget. It fails at once when the turn would come after ctx's deadline.
func (c *sharedClient) wait(ctx context.Context) error {
	limiters := []*rate.Limiter{c.vault.proven}
	if c.refused.Load() && !c.proven.Load() {
		limiters = []*rate.Limiter{c.probation, c.vault.probation}
	}
	for _, l := range limiters {
		if err := l.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return keyvault.AsError(ctx.Err())
			}
			limit := fmt.Sprintf("rate limit for this vault (%g reads/s)", float64(l.Limit()))
			if l != c.vault.proven {
				limit = fmt.Sprintf("probation limit for an identity this vault refused (%g reads/s)", float64(l.Limit()))
			}
			return &keyvault.Error{Kind: keyvault.KindUnavailable, Code: codeProviderLimit, Err: err,
				Detail: "the provider's " + limit + " would delay this read past the driver's deadline; the driver will retry"}
		}
	}
	return nil
}

func (c *sharedClient) lookup(key string, nb time.Time) (any, bool) {
	if c.opts.ResultTTL <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.kept[key]
	if r == nil || !time.Now().Before(r.until) || r.started.Before(nb) {
		return nil, false
	}
	return r.value, true
}

// keepLocked keeps a result for ResultTTL within the byte budget, and drops it (its bytes with it)
// when it expires. c.mu is held.
func (c *sharedClient) keepLocked(key string, v any, started time.Time) {
	if c.opts.ResultTTL <= 0 {
		return
	}
	if old := c.kept[key]; old != nil {
		delete(c.kept, key)
		c.budget.release(old.size)
	}
	r := &keptResult{value: v, started: started, until: time.Now().Add(c.opts.ResultTTL), size: resultSize(v)}
	if !c.budget.take(r.size) {
		return // over the ceiling: this read is simply not kept
	}
	c.kept[key] = r
	time.AfterFunc(c.opts.ResultTTL, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.kept[key] == r {
			delete(c.kept, key)
			c.budget.release(r.size)
		}
	})
}

// resultSize estimates the memory a kept result holds, with a floor for the entry itself.
func resultSize(v any) int64 {
	const entry = 256
	switch r := v.(type) {
	case keyvault.Secret:
		return entry + int64(len(r.Version)+len(r.Value)+len(r.ContentType))
	case keyvault.Key:
		return entry + int64(len(r.Version)+len(r.Kty)+len(r.N)+len(r.E)+len(r.Crv)+len(r.X)+len(r.Y))
	case keyvault.Certificate:
		return entry + int64(len(r.Version)+len(r.DER))
	case []keyvault.VersionInfo:
		return entry + int64(len(r))*96
	case []keyvault.Match:
		n := entry
		for _, m := range r {
			n += 64 + len(m.Name) + 8*len(m.Selectors) // the Match, its name and its indexes
		}
		return int64(n)
	}
	return entry
}

// byteBudget is the ceiling on the bytes of every kept result of every identity together.
type byteBudget struct {
	max  int64
	used atomic.Int64
}

func (b *byteBudget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *byteBudget) release(n int64) { b.used.Add(-n) }

func readKey(op, name, version string) string { return op + "\x00" + name + "\x00" + version }

func (c *sharedClient) GetSecret(ctx context.Context, name, version string) (keyvault.Secret, error) {
	return read(ctx, c, readKey("secret", name, version), objectRead{config.TypeSecret, name}, alone(c, secretsClient, func(ctx context.Context) (keyvault.Secret, error) {
		return c.next.GetSecret(ctx, name, version)
	}))
}

func (c *sharedClient) GetKey(ctx context.Context, name, version string) (keyvault.Key, error) {
	return read(ctx, c, readKey("key", name, version), objectRead{config.TypeKey, name}, alone(c, keysClient, func(ctx context.Context) (keyvault.Key, error) {
		return c.next.GetKey(ctx, name, version)
	}))
}

func (c *sharedClient) GetCertificate(ctx context.Context, name, version string) (keyvault.Certificate, error) {
	return read(ctx, c, readKey("cert", name, version), objectRead{config.TypeCert, name}, alone(c, certsClient, func(ctx context.Context) (keyvault.Certificate, error) {
		return c.next.GetCertificate(ctx, name, version)
	}))
}

func (c *sharedClient) SecretVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return read(ctx, c, readKey("secret-versions", name, ""), objectRead{config.TypeSecret, name}, alone(c, secretsClient, func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return c.next.SecretVersions(keyvault.WithPacer(ctx, c.wait), name)
	}))
}

func (c *sharedClient) KeyVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return read(ctx, c, readKey("key-versions", name, ""), objectRead{config.TypeKey, name}, alone(c, keysClient, func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return c.next.KeyVersions(keyvault.WithPacer(ctx, c.wait), name)
	}))
}

func (c *sharedClient) CertificateVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return read(ctx, c, readKey("cert-versions", name, ""), objectRead{config.TypeCert, name}, alone(c, certsClient, func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return c.next.CertificateVersions(keyvault.WithPacer(ctx, c.wait), name)
	}))
}

// ListSecrets shares a listing between callers with the same query. The first page takes a turn at
// the vault's limiter as any read does (throttled); every later page takes one more (the pacer).
func (c *sharedClient) ListSecrets(ctx context.Context, q keyvault.ListQuery) ([]keyvault.Match, error) {
	return read(ctx, c, readKey("secret-list", q.Key(), ""), objectRead{}, alone(c, secretsClient, func(ctx context.Context) ([]keyvault.Match, error) {
		return c.next.ListSecrets(keyvault.WithPacer(ctx, c.wait), q)
	}))
}

func (c *sharedClient) ListCertificates(ctx context.Context, q keyvault.ListQuery) ([]keyvault.Match, error) {
	return read(ctx, c, readKey("cert-list", q.Key(), ""), objectRead{}, alone(c, certsClient, func(ctx context.Context) ([]keyvault.Match, error) {
		return c.next.ListCertificates(keyvault.WithPacer(ctx, c.wait), q)
	}))
}
