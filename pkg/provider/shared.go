package provider

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

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
}

// sharedClient wraps the Key Vault client of ONE identity for ONE vault, so nothing it shares or
// keeps can reach another identity: identical reads in flight are joined, successful results are
// kept for ResultTTL, every request waits for the vault's rate limiter, and a 429 is retried with
// backoff within the caller's deadline.
type sharedClient struct {
	next    keyvault.Client
	opts    SharingOptions
	limiter *rate.Limiter
	rec     metrics.Recorder

	flight singleflight.Group
	mu     sync.Mutex
	kept   map[string]keptResult

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

type keptResult struct {
	value any
	until time.Time
}

func newSharedClient(next keyvault.Client, limiter *rate.Limiter, o SharingOptions, rec metrics.Recorder) *sharedClient {
	c := &sharedClient{next: next, opts: o, limiter: limiter, rec: rec, kept: map[string]keptResult{}}
	for i := range c.first {
		c.first[i] = make(chan struct{}, 1)
	}
	return c
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

// read serves one read by key through the result cache, the in-flight group and the throttle loop.
func read[T any](ctx context.Context, c *sharedClient, key string, fetch func(context.Context) (T, error)) (T, error) {
	if v, ok := c.lookup(key); ok {
		c.rec.ObserveRead("hit")
		return v.(T), nil
	}
	for {
		v, led, err := c.join(ctx, key, func(fctx context.Context) (any, error) { return throttled(fctx, c, fetch) })
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

// join runs fetch once for all callers of key at the same time. led reports whether this caller
// ran it. The read outlives a cancelled leader (others may wait on it) but not its deadline.
func (c *sharedClient) join(ctx context.Context, key string, fetch func(context.Context) (any, error)) (any, bool, error) {
	var led bool // written by the leader's goroutine, read only after its result arrives
	ch := c.flight.DoChan(key, func() (any, error) {
		led = true
		fctx := context.WithoutCancel(ctx)
		if d, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			fctx, cancel = context.WithDeadline(fctx, d)
			defer cancel()
		}
		v, err := fetch(fctx)
		if err == nil {
			c.keep(key, v)
		}
		return v, err
	})
	select {
	case r := <-ch:
		return r.Val, led, r.Err
	case <-ctx.Done():
		return nil, false, keyvault.AsError(ctx.Err())
	}
}

// throttled paces a read by the vault's rate limit and retries it after a 429: after the
// Retry-After the vault gave, or with exponential backoff and jitter when it gave none. It never
// waits past the deadline: a 429 that would outlive it fails at once as Unavailable.
func throttled[T any](ctx context.Context, c *sharedClient, fetch func(context.Context) (T, error)) (T, error) {
	var zero T
	backoff := c.opts.ThrottleBackoff
	for attempt := 1; ; attempt++ {
		if err := c.limiter.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return zero, keyvault.AsError(ctx.Err())
			}
			return zero, &keyvault.Error{Kind: keyvault.KindUnavailable, Err: err,
				Detail: fmt.Sprintf("the provider's rate limit for this vault (%g reads/s) would delay this read past the driver's deadline", c.opts.VaultRateLimit)}
		}
		v, err := fetch(ctx)
		kvErr := keyvault.AsError(err)
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

func (c *sharedClient) lookup(key string) (any, bool) {
	if c.opts.ResultTTL <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.kept[key]
	if !ok || time.Now().After(r.until) {
		return nil, false
	}
	return r.value, true
}

func (c *sharedClient) keep(key string, v any) {
	if c.opts.ResultTTL <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.kept) >= 1024 { // bounded: drop what has expired
		for k, r := range c.kept {
			if now.After(r.until) {
				delete(c.kept, k)
			}
		}
	}
	c.kept[key] = keptResult{value: v, until: now.Add(c.opts.ResultTTL)}
}

func readKey(op, name, version string) string { return op + "\x00" + name + "\x00" + version }

func (c *sharedClient) GetSecret(ctx context.Context, name, version string) (keyvault.Secret, error) {
	return read(ctx, c, readKey("secret", name, version), alone(c, secretsClient, func(ctx context.Context) (keyvault.Secret, error) {
		return c.next.GetSecret(ctx, name, version)
	}))
}

func (c *sharedClient) GetKey(ctx context.Context, name, version string) (keyvault.Key, error) {
	return read(ctx, c, readKey("key", name, version), alone(c, keysClient, func(ctx context.Context) (keyvault.Key, error) {
		return c.next.GetKey(ctx, name, version)
	}))
}

func (c *sharedClient) GetCertificate(ctx context.Context, name, version string) (keyvault.Certificate, error) {
	return read(ctx, c, readKey("cert", name, version), alone(c, certsClient, func(ctx context.Context) (keyvault.Certificate, error) {
		return c.next.GetCertificate(ctx, name, version)
	}))
}

func (c *sharedClient) SecretVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return read(ctx, c, readKey("secret-versions", name, ""), alone(c, secretsClient, func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return c.next.SecretVersions(ctx, name)
	}))
}

func (c *sharedClient) KeyVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return read(ctx, c, readKey("key-versions", name, ""), alone(c, keysClient, func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return c.next.KeyVersions(ctx, name)
	}))
}

func (c *sharedClient) CertificateVersions(ctx context.Context, name string) ([]keyvault.VersionInfo, error) {
	return read(ctx, c, readKey("cert-versions", name, ""), alone(c, certsClient, func(ctx context.Context) ([]keyvault.VersionInfo, error) {
		return c.next.CertificateVersions(ctx, name)
	}))
}
