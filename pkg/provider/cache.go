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
	// MaxIdentities is the most identities kept (default 256); the least recently used goes first.
	MaxIdentities int
	// IdleTTL drops an identity not used for this long (default 1h).
	IdleTTL time.Duration
}

// maxAcceptedTokens bounds the accepted service account tokens remembered per workload identity
// (one per pod of that service account, refreshed by the kubelet about hourly).
const maxAcceptedTokens = 1024

// maxAcceptedFor caps how long an accepted token is remembered, whatever its exp says.
const maxAcceptedFor = 24 * time.Hour

// identity is what one identity owns: its credential (and so its token cache), the newest
// accepted workload identity assertion, and one Key Vault client per vault.
//
// What proves a caller may use it: for a service principal, the client secret (its salted HMAC is
// in the cache key); for workload identity, a service account token that Entra ID accepted for
// this identity (accepted, by hash, until the token expires) and whose subject is the calling
// pod's own service account (checked in Mount). A token that only carries the right claims never
// unlocks the credential, its clients or their kept results: it is first exchanged at Entra ID.
type identity struct {
	cred      azcore.TokenCredential
	assertion *auth.Assertion
	newest    time.Time              // expiry of the token in assertion
	accepted  map[[32]byte]time.Time // workload identity tokens Entra ID accepted, until expiry
	clients   map[string]*sharedClient
	lastUsed  time.Time
}

// vaultLimiter paces the reads of every identity to one vault: proven identities (the vault has
// answered them) share the main budget, the others a small probation budget.
type vaultLimiter struct {
	proven, probation *rate.Limiter
	users             int // identities with a client for this vault
}

// clientCache keeps identities by auth.CacheKey.
type clientCache struct {
	opts    ClientCacheOptions
	sharing SharingOptions
	rec     metrics.Recorder
	now     func() time.Time
	budget  *byteBudget

	proving singleflight.Group // token exchanges, by identity and token

	mu         sync.Mutex
	identities map[string]*identity
	limiters   map[string]*vaultLimiter // by vault URL, pruned with the identities
}

func newClientCache(o ClientCacheOptions, sharing SharingOptions, rec metrics.Recorder) *clientCache {
	if o.MaxIdentities <= 0 {
		o.MaxIdentities = 256
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = time.Hour
	}
	sharing.defaults()
	return &clientCache{opts: o, sharing: sharing, rec: rec, now: time.Now, budget: &byteBudget{max: sharing.ResultCacheMaxBytes},
		identities: map[string]*identity{}, limiters: map[string]*vaultLimiter{}}
}

type newClientFunc func(vaultURL string, cred azcore.TokenCredential) (keyvault.Client, error)

// get returns the Key Vault client of cfg's identity for the vault named vault, building what is
// missing. A workload identity token not yet accepted is first exchanged at Entra ID (one token
// request).
func (c *clientCache) get(ctx context.Context, cfg config.MountConfig, vault string, env cloud.Environment, authOpts auth.Options, newClient newClientFunc) (keyvault.Client, error) {
	key := auth.CacheKey(cfg.Identity, cfg.TenantID, env)
	vaultURL := env.VaultURL(vault)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropIdle(c.now())
	id := c.identities[key]
	if token := cfg.Identity.Token; token != "" {
		h := auth.TokenHash(token)
		if until, ok := id.acceptedUntil(h); !ok || !c.now().Before(until) {
			c.mu.Unlock()
			p, err := c.prove(ctx, key, cfg, env, authOpts, h)
			c.mu.Lock()
			if err != nil {
				return nil, err
			}
			id = c.adoptLocked(key, p, token, h)
		}
	} else if id == nil {
		a := &auth.Assertion{}
		cred, err := auth.NewCredential(cfg.Identity, cfg.TenantID, env, a, authOpts)
		if err != nil {
			return nil, credentialError(err)
		}
		id = &identity{cred: cred, assertion: a, clients: map[string]*sharedClient{}}
		c.makeRoom()
		c.identities[key] = id
	}
	id.lastUsed = c.now()
	client := id.clients[vaultURL]
	if client == nil {
		next, err := newClient(vaultURL, id.cred)
		if err != nil {
			return nil, err
		}
		vl := c.limiters[vaultURL]
		if vl == nil {
			s := c.sharing
			vl = &vaultLimiter{
				proven:    rate.NewLimiter(rate.Limit(s.VaultRateLimit), s.VaultBurst),
				probation: rate.NewLimiter(rate.Limit(s.VaultRateLimit/10), max(1, s.VaultBurst/10)),
			}
			c.limiters[vaultURL] = vl
		}
		vl.users++
		client = newSharedClient(next, vl, c.budget, c.sharing, c.rec)
		id.clients[vaultURL] = client
	}
	return client, nil
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

// proof is a token Entra ID accepted, with the credential that exchanged it.
type proof struct {
	cred      azcore.TokenCredential
	assertion *auth.Assertion
	until     time.Time
}

// prove exchanges a service account token at Entra ID with a credential of its own (one
// exchange per identity and token at a time). It touches nothing the identity holds.
func (c *clientCache) prove(ctx context.Context, key string, cfg config.MountConfig, env cloud.Environment, authOpts auth.Options, h [32]byte) (proof, error) {
	v, err, _ := c.proving.Do(key+"\x00"+string(h[:]), func() (any, error) {
		a := &auth.Assertion{}
		a.Set(cfg.Identity.Token)
		cred, err := auth.NewCredential(cfg.Identity, cfg.TenantID, env, a, authOpts)
		if err != nil {
			return nil, credentialError(err)
		}
		if err := auth.Prove(ctx, cred, env, cfg.TenantID); err != nil {
			var proxyErr *auth.TokenProxyError
			if errors.As(err, &proxyErr) { // the AKS token proxy refused or could not be reached
				return nil, &keyvault.Error{Kind: keyvault.KindUnauthenticated, Detail: "could not get a token: " + proxyErr.Error(), Err: err}
			}
			return nil, keyvault.AsError(err)
		}
		until := c.now().Add(maxAcceptedFor)
		if claims, ok := auth.ReadClaims(cfg.Identity.Token); ok && claims.Expiry.Before(until) {
			until = claims.Expiry
		}
		return proof{cred: cred, assertion: a, until: until}, nil
	})
	if err != nil {
		return proof{}, err
	}
	return v.(proof), nil
}

// adoptLocked records an accepted token for the identity of key, creating the identity with the
// proof's credential (which holds the access token just obtained) if there is none. The token
// becomes the identity's assertion if it lives longer than the current one. c.mu is held.
func (c *clientCache) adoptLocked(key string, p proof, token string, h [32]byte) *identity {
	id := c.identities[key]
	switch {
	case id == nil:
		id = &identity{cred: p.cred, assertion: p.assertion, newest: p.until,
			accepted: map[[32]byte]time.Time{}, clients: map[string]*sharedClient{}}
		c.makeRoom()
		c.identities[key] = id
	case p.until.After(id.newest):
		id.assertion.Set(token)
		id.newest = p.until
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

func (c *clientCache) dropIdle(now time.Time) {
	for k, id := range c.identities {
		if now.Sub(id.lastUsed) > c.opts.IdleTTL {
			c.removeLocked(k)
		}
	}
}

func (c *clientCache) makeRoom() {
	for len(c.identities) >= c.opts.MaxIdentities {
		var oldest string
		for k, id := range c.identities {
			if oldest == "" || id.lastUsed.Before(c.identities[oldest].lastUsed) {
				oldest = k
			}
		}
		c.removeLocked(oldest)
	}
}

// removeLocked drops an identity and the vault limiters no other identity uses.
func (c *clientCache) removeLocked(key string) {
	id := c.identities[key]
	if id == nil {
		return
	}
	delete(c.identities, key)
	for vaultURL := range id.clients {
		if vl := c.limiters[vaultURL]; vl != nil {
			if vl.users--; vl.users <= 0 {
				delete(c.limiters, vaultURL)
			}
		}
	}
}

// size reports how many identities and vault limiters are kept.
func (c *clientCache) size() (identities, limiters int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.identities), len(c.limiters)
}
