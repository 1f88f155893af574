package provider

import (
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
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

// identity is what one identity owns: its credential (and so its token cache), the newest
// workload identity assertion, and one Key Vault client per vault (each with its challenge state).
type identity struct {
	cred      azcore.TokenCredential
	assertion *auth.Assertion
	clients   map[string]keyvault.Client
	lastUsed  time.Time
}

// clientCache keeps identities by auth.CacheKey, so an entry is only reachable with the identity
// (secret, or token subject) that created it.
type clientCache struct {
	opts    ClientCacheOptions
	sharing SharingOptions
	rec     metrics.Recorder
	now     func() time.Time

	mu         sync.Mutex
	identities map[string]*identity
	limiters   map[string]*rate.Limiter // by vault URL, shared by every identity
}

func newClientCache(o ClientCacheOptions, sharing SharingOptions, rec metrics.Recorder) *clientCache {
	if o.MaxIdentities <= 0 {
		o.MaxIdentities = 256
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = time.Hour
	}
	sharing.defaults()
	return &clientCache{opts: o, sharing: sharing, rec: rec, now: time.Now,
		identities: map[string]*identity{}, limiters: map[string]*rate.Limiter{}}
}

type newClientFunc func(vaultURL string, cred azcore.TokenCredential) (keyvault.Client, error)

// get returns the Key Vault client of cfg's identity for cfg's vault, building what is missing.
func (c *clientCache) get(cfg config.MountConfig, env cloud.Environment, authOpts auth.Options, newClient newClientFunc) (keyvault.Client, error) {
	key := auth.CacheKey(cfg.Identity, cfg.TenantID, env)
	vaultURL := env.VaultURL(cfg.VaultName)
	now := c.now()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropIdle(now)
	id := c.identities[key]
	if id == nil {
		a := &auth.Assertion{}
		cred, err := auth.NewCredential(cfg.Identity, cfg.TenantID, env, a, authOpts)
		if err != nil {
			return nil, &keyvault.Error{Kind: keyvault.KindUnauthenticated, Detail: "cannot create the credential: " + err.Error(), Err: err}
		}
		c.makeRoom()
		id = &identity{cred: cred, assertion: a, clients: map[string]keyvault.Client{}}
		c.identities[key] = id
	}
	id.lastUsed = now
	if cfg.Identity.Mode == config.WorkloadIdentity {
		id.assertion.Set(cfg.Identity.Token) // the newest token the driver sent
	}
	client := id.clients[vaultURL]
	if client == nil {
		next, err := newClient(vaultURL, id.cred)
		if err != nil {
			return nil, err
		}
		limiter := c.limiters[vaultURL]
		if limiter == nil {
			limiter = rate.NewLimiter(rate.Limit(c.sharing.VaultRateLimit), c.sharing.VaultBurst)
			c.limiters[vaultURL] = limiter
		}
		client = newSharedClient(next, limiter, c.sharing, c.rec)
		id.clients[vaultURL] = client
	}
	return client, nil
}

func (c *clientCache) dropIdle(now time.Time) {
	for k, id := range c.identities {
		if now.Sub(id.lastUsed) > c.opts.IdleTTL {
			delete(c.identities, k)
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
		delete(c.identities, oldest)
	}
}

// size reports how many identities are kept.
func (c *clientCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.identities)
}
