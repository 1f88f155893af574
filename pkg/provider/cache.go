package provider

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/metrics"
)

// ClientCacheOptions bound the per-identity cache of credentials and Key Vault clients.
type ClientCacheOptions struct {
	// MaxIdentities is the most proven identities kept (default 256): identities Key Vault has
	// served. The least recently used goes first.
	MaxIdentities int
	// MaxUnproven is the most identities kept that Entra ID (or the managed identity endpoint)
	// issued a token to but Key Vault has not served yet (default 32). They live in a pool of
	// their own, so however many there are, they never evict a proven identity.
	MaxUnproven int
	// MaxVaultsPerIdentity is the most Key Vault clients (one per vault) kept per identity
	// (default 16, config.MaxVaults); the least recently used goes first, with its kept results.
	MaxVaultsPerIdentity int
	// IdleTTL drops an identity not used for this long (default 1h).
	IdleTTL time.Duration
}

func (o *ClientCacheOptions) defaults() {
	if o.MaxIdentities <= 0 {
		o.MaxIdentities = 256
	}
	if o.MaxUnproven <= 0 {
		o.MaxUnproven = 32
	}
	if o.MaxVaultsPerIdentity <= 0 {
		o.MaxVaultsPerIdentity = config.MaxVaults
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = time.Hour
	}
}

// maxAcceptedTokens bounds the accepted service account tokens remembered per workload identity:
// about two live tokens per pod of the service account on the node (the kubelet refreshes them at
// 80% of their lifetime), and a node runs at most a few hundred pods.
const maxAcceptedTokens = 512

// maxAcceptedFor caps how long an accepted token is remembered, whatever its exp says.
const maxAcceptedFor = 24 * time.Hour

// Bounds of the maps keyed by vault: one rate limiter per vault, and the (identity, vault) pairs
// Key Vault refused. Past them the least recently used entry goes; a limiter that goes while
// clients still use it keeps pacing them, and the next new client of that vault gets a new one.
const (
	maxLimiters = 1024
	maxRefusals = 4096
)

// identity is what one identity owns: its credential (and so its token cache), the newest
// accepted workload identity assertion, and one Key Vault client per vault.
//
// What proves a caller may use it: for a service principal, the client secret (its salted HMAC is
// in the cache key); for workload identity, a service account token that Entra ID accepted for
// this identity (accepted, by hash, until the token expires) and whose subject is the calling
// pod's own service account (checked in Mount); for managed identity, nothing but the node (any
// pod on the node may use the node's identities, as with Azure's provider: see
// --managed-identity-namespaces). A token that only carries the right claims never unlocks the
// credential, its clients or their kept results: it is first exchanged at Entra ID.
//
// Where it is kept: an identity enters the cache only after Entra ID (or the managed identity
// endpoint) issued it a token, first in the small unproven pool; it moves to the proven identities
// when Key Vault serves it (a value or a NotFound). Made-up credentials never get past Entra ID, so
// they hold nothing after their mount.
type identity struct {
	key       string
	cred      azcore.TokenCredential
	assertion *auth.Assertion
	newest    time.Time              // expiry of the token in assertion
	accepted  map[[32]byte]time.Time // workload identity tokens Entra ID accepted, until expiry
	clients   map[string]*sharedClient
	lastUsed  time.Time
	proven    bool
}

// vaultLimiter paces the reads of every identity to one vault: identities the vault has not
// refused share the main budget; identities it refused (401/403) share the small probation budget,
// each within a probation limiter of its own.
type vaultLimiter struct {
	proven, probation *rate.Limiter
	lastUsed          time.Time
}

// clientCache keeps identities by auth.CacheKey.
type clientCache struct {
	opts    ClientCacheOptions
	sharing SharingOptions
	rec     metrics.Recorder
	now     func() time.Time
	budget  *byteBudget
	newCred credentialFunc

	proving singleflight.Group // token requests that prove an identity, by identity (and token)

	mu         sync.Mutex
	identities map[string]*identity     // proven: Key Vault served them
	unproven   map[string]*identity     // Entra ID issued them a token; Key Vault has not served them yet
	limiters   map[string]*vaultLimiter // by vault URL
	refused    map[string]time.Time     // identity key + vault URL that Key Vault refused, when last refused
	swept      time.Time                // when idle entries were last dropped
}

// sweepEvery is how often idle entries are looked for (at a mount, not on a timer).
const sweepEvery = time.Minute

// credentialFunc builds an identity's credential (auth.NewCredential).
type credentialFunc func(id config.Identity, tenantID string, env cloud.Environment, a *auth.Assertion, o auth.Options) (azcore.TokenCredential, error)

func newClientCache(o ClientCacheOptions, sharing SharingOptions, rec metrics.Recorder, newCred credentialFunc) *clientCache {
	o.defaults()
	sharing.defaults()
	if newCred == nil {
		newCred = auth.NewCredential
	}
	return &clientCache{opts: o, sharing: sharing, rec: rec, now: time.Now, budget: &byteBudget{max: sharing.ResultCacheMaxBytes}, newCred: newCred,
		identities: map[string]*identity{}, unproven: map[string]*identity{}, limiters: map[string]*vaultLimiter{}, refused: map[string]time.Time{}}
}

type newClientFunc func(vaultURL string, cred azcore.TokenCredential) (keyvault.Client, error)

// get returns the Key Vault client of cfg's identity for the vault named vault, building what is
// missing. An identity not in the cache first proves itself with one token request: a workload
// identity token not yet accepted is exchanged at Entra ID, and a service principal or managed
// identity asks for a Key Vault token. Nothing is kept for an identity that fails it.
func (c *clientCache) get(ctx context.Context, cfg config.MountConfig, vault string, env cloud.Environment, authOpts auth.Options, newClient newClientFunc) (keyvault.Client, error) {
	key := auth.CacheKey(cfg.Identity, cfg.TenantID, env)
	vaultURL := env.VaultURL(vault)

	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.swept) >= sweepEvery {
		c.dropIdleLocked(now)
		c.swept = now
	}
	id := c.lookupLocked(key)
	if token := cfg.Identity.Token; token != "" {
		h := auth.TokenHash(token)
		if until, ok := id.acceptedUntil(h); !ok || !now.Before(until) {
			c.mu.Unlock()
			p, err := c.prove(ctx, key, cfg, env, authOpts, h)
			c.mu.Lock()
			if err != nil {
				return nil, err
			}
			id = c.adoptLocked(key, p, token, h)
		}
	} else if id == nil {
		c.mu.Unlock()
		p, err := c.prove(ctx, key, cfg, env, authOpts, [32]byte{})
		c.mu.Lock()
		if err != nil {
			return nil, err
		}
		if id = c.lookupLocked(key); id == nil { // another mount may have added it meanwhile
			id = &identity{key: key, cred: p.cred, assertion: p.assertion, clients: map[string]*sharedClient{}}
			c.addUnprovenLocked(id)
		}
	}
	now = c.now()
	id.lastUsed = now
	client := id.clients[vaultURL]
	if client == nil {
		next, err := newClient(vaultURL, id.cred)
		if err != nil {
			return nil, err
		}
		if len(id.clients) >= c.opts.MaxVaultsPerIdentity {
			dropLeastRecent(id.clients, func(s *sharedClient) time.Time { return s.lastUsed }, nil)
		}
		refusalKey := key + "\x00" + vaultURL
		client = newSharedClient(next, c.limiterLocked(vaultURL, now), c.budget, c.sharing, c.rec)
		client.refused.Store(!c.refused[refusalKey].IsZero())
		client.onProven = func() { c.promote(id, refusalKey) }
		client.onRefused = func() { c.refuse(refusalKey) }
		id.clients[vaultURL] = client
	}
	client.lastUsed = now
	client.vault.lastUsed = now
	return client, nil
}

// lookupLocked finds an identity, proven or not. c.mu is held.
func (c *clientCache) lookupLocked(key string) *identity {
	if id := c.identities[key]; id != nil {
		return id
	}
	return c.unproven[key]
}

// limiterLocked returns the rate limiter of a vault, creating it. c.mu is held.
func (c *clientCache) limiterLocked(vaultURL string, now time.Time) *vaultLimiter {
	vl := c.limiters[vaultURL]
	if vl == nil {
		if len(c.limiters) >= maxLimiters {
			dropLeastRecent(c.limiters, func(v *vaultLimiter) time.Time { return v.lastUsed }, nil)
		}
		s := c.sharing
		vl = &vaultLimiter{
			proven:    rate.NewLimiter(rate.Limit(s.VaultRateLimit), s.VaultBurst),
			probation: rate.NewLimiter(rate.Limit(s.VaultRateLimit/10), max(1, s.VaultBurst/10)),
			lastUsed:  now,
		}
		c.limiters[vaultURL] = vl
	}
	return vl
}

// promote moves an identity that Key Vault served to the proven identities, and forgets that the
// vault refused it there.
func (c *clientCache) promote(id *identity, refusalKey string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refused, refusalKey)
	if id.proven {
		return
	}
	if c.unproven[id.key] != id {
		return // dropped from the pool while its mount ran: its next mount proves it again
	}
	delete(c.unproven, id.key)
	if c.identities[id.key] != nil {
		return
	}
	id.proven = true
	for len(c.identities) >= c.opts.MaxIdentities {
		dropLeastRecent(c.identities, func(i *identity) time.Time { return i.lastUsed }, nil)
	}
	c.identities[id.key] = id
}

// refuse remembers that Key Vault refused an identity at a vault (its reads there are on
// probation), even if the identity itself is dropped and comes back.
func (c *clientCache) refuse(refusalKey string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.refused[refusalKey]; !ok && len(c.refused) >= maxRefusals {
		dropLeastRecent(c.refused, func(t time.Time) time.Time { return t }, nil)
	}
	c.refused[refusalKey] = c.now()
}

// addUnprovenLocked adds an identity to the pool of unproven ones, making room by dropping the
// least recently used unproven identity (never a proven one). c.mu is held.
func (c *clientCache) addUnprovenLocked(id *identity) {
	for len(c.unproven) >= c.opts.MaxUnproven {
		dropLeastRecent(c.unproven, func(i *identity) time.Time { return i.lastUsed }, nil)
	}
	c.unproven[id.key] = id
}

// dropLeastRecent deletes the entry of m that was used least recently (with onDrop, if set).
func dropLeastRecent[V any](m map[string]V, used func(V) time.Time, onDrop func(V)) {
	var oldest string
	var at time.Time
	for k, v := range m {
		if t := used(v); oldest == "" || t.Before(at) {
			oldest, at = k, t
		}
	}
	if oldest == "" {
		return
	}
	if onDrop != nil {
		onDrop(m[oldest])
	}
	delete(m, oldest)
}

func credentialError(err error) error {
	return &keyvault.Error{Kind: keyvault.KindUnauthenticated, Detail: "cannot create the credential: " + err.Error(), Err: err}
}

// acceptedUntil reports until when a token is accepted for the identity (nil: none is).
func (id *identity) acceptedUntil(h [32]byte) (time.Time, bool) {
	if id == nil {
		return time.Time{}, false
	}
	until, ok := id.accepted[h]
	return until, ok
}

// proof is a credential Entra ID (or the managed identity endpoint) issued a token to; for
// workload identity, with the service account token it accepted and until when.
type proof struct {
	cred      azcore.TokenCredential
	assertion *auth.Assertion
	until     time.Time
}

// prove builds a credential of its own for cfg's identity and asks for a Key Vault token with it
// (one request per identity, and token, at a time). It touches nothing the cache holds. The
// credential keeps the token it got, so the identity's first read asks for no other.
func (c *clientCache) prove(ctx context.Context, key string, cfg config.MountConfig, env cloud.Environment, authOpts auth.Options, h [32]byte) (proof, error) {
	v, err, _ := c.proving.Do(key+"\x00"+string(h[:]), func() (any, error) {
		a := &auth.Assertion{}
		if cfg.Identity.Token != "" {
			a.Set(cfg.Identity.Token)
		}
		cred, err := c.newCred(cfg.Identity, cfg.TenantID, env, a, authOpts)
		if err != nil {
			return nil, credentialError(err)
		}
		if err := auth.Prove(ctx, cred, env, cfg.TenantID); err != nil {
			return nil, tokenFailure(err)
		}
		p := proof{cred: cred, assertion: a}
		if cfg.Identity.Token != "" {
			p.until = c.now().Add(maxAcceptedFor)
			if claims, ok := auth.ReadClaims(cfg.Identity.Token); ok && claims.Expiry.Before(p.until) {
				p.until = claims.Expiry
			}
		}
		return p, nil
	})
	if err != nil {
		return proof{}, err
	}
	return v.(proof), nil
}

// tokenFailure classifies a failed token request as a Key Vault read's would be: what Entra ID or
// the managed identity endpoint said, or that no token could be had.
func tokenFailure(err error) error {
	var proxyErr *auth.TokenProxyError
	if errors.As(err, &proxyErr) { // the AKS token proxy refused or could not be reached
		return &keyvault.Error{Kind: keyvault.KindUnauthenticated, Detail: "could not get a token: " + proxyErr.Error(), Err: err}
	}
	return keyvault.TokenFailure(err)
}

// adoptLocked records an accepted token for the identity of key, creating the identity (in the
// unproven pool) with the proof's credential, which holds the access token just obtained, if there
// is none. The token becomes the identity's assertion if it lives longer than the current one.
// c.mu is held.
func (c *clientCache) adoptLocked(key string, p proof, token string, h [32]byte) *identity {
	id := c.lookupLocked(key)
	switch {
	case id == nil:
		id = &identity{key: key, cred: p.cred, assertion: p.assertion, newest: p.until,
			accepted: map[[32]byte]time.Time{}, clients: map[string]*sharedClient{}}
		c.addUnprovenLocked(id)
	case p.until.After(id.newest):
		id.assertion.Set(token)
		id.newest = p.until
	}
	if id.accepted == nil {
		id.accepted = map[[32]byte]time.Time{}
	}
	if len(id.accepted) >= maxAcceptedTokens {
		now := c.now()
		for k, t := range id.accepted {
			if !now.Before(t) || len(id.accepted) >= maxAcceptedTokens {
				delete(id.accepted, k)
			}
		}
	}
	id.accepted[h] = p.until
	return id
}

// dropIdleLocked drops identities, limiters and refusals unused for IdleTTL. c.mu is held.
func (c *clientCache) dropIdleLocked(now time.Time) {
	for _, m := range []map[string]*identity{c.identities, c.unproven} {
		for k, id := range m {
			if now.Sub(id.lastUsed) > c.opts.IdleTTL {
				delete(m, k)
			}
		}
	}
	for k, vl := range c.limiters {
		if now.Sub(vl.lastUsed) > c.opts.IdleTTL {
			delete(c.limiters, k)
		}
	}
	for k, t := range c.refused {
		if now.Sub(t) > c.opts.IdleTTL {
			delete(c.refused, k)
		}
	}
}

// size reports how many proven identities and vault limiters are kept.
func (c *clientCache) size() (identities, limiters int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.identities), len(c.limiters)
}

// sizes reports every map of the cache, for tests and bounds checks.
func (c *clientCache) sizes() (proven, unproven, clients, limiters, refused int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range []map[string]*identity{c.identities, c.unproven} {
		for _, id := range m {
			clients += len(id.clients)
		}
	}
	return len(c.identities), len(c.unproven), clients, len(c.limiters), len(c.refused)
}
