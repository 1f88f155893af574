package model

import (
	"math"
	"time"
)

// Policy is how a node's provider serves mounts.
type Policy int

const (
	// PerMount is Azure's provider: every mount builds a credential (two discovery requests and
	// a token request) and SDK clients (a 401 challenge), then reads its objects one after
	// another; the SDK retries a 429 up to 3 times after its Retry-After.
	PerMount Policy = iota
	// Shared is this provider: credentials and clients kept per identity (a workload identity
	// token is exchanged once per pod token), each client's first read alone (one challenge),
	// reads in parallel (Parallelism), identical reads in flight joined and results kept for
	// ResultTTL per node and identity (a rotation mount takes neither a kept result nor a read
	// that started before it arrived), every read paced by the node's per-vault limiter (an
	// identity the vault has not yet served by its probation limiter, a tenth of it), and a 429
	// retried after its Retry-After within the mount's deadline.
	Shared
)

func (p Policy) String() string {
	if p == PerMount {
		return "per-mount (Azure's)"
	}
	return "shared (ours)"
}

// IdentityKind is how the pods authenticate.
type IdentityKind int

const (
	// WorkloadIdentity is workload identity: each pod's service account token (refreshed by the
	// kubelet every TokenRefresh) is exchanged at Entra ID.
	WorkloadIdentity IdentityKind = iota
	// ServicePrincipal is a client secret: one credential per identity.
	ServicePrincipal
)

// Settings are the provider's (Shared policy) flags.
type Settings struct {
	ResultTTL          time.Duration // --result-cache-ttl
	Parallelism        int           // --parallel-fetches
	VaultRateLimit     float64       // --vault-rate-limit, reads/s per node and vault
	VaultBurst         int           // --vault-burst
	MaxThrottleRetries int           // retries of a 429 (the provider's 6)
	AzureMaxRetries    int           // retries of a 429 by the Azure SDK (PerMount: 3)
	TokenLifetime      time.Duration // an access token's life; the credential asks again after it
}

// DefaultSettings are the provider's defaults.
func DefaultSettings() Settings {
	return Settings{ResultTTL: 10 * time.Second, Parallelism: 16, VaultRateLimit: 200, VaultBurst: 400,
		MaxThrottleRetries: 6, AzureMaxRetries: 3, TokenLifetime: time.Hour}
}

// mount is one Mount call to a node's provider.
type mount struct {
	identity int // the workload's identity (one per deployment) and so its SecretProviderClass
	vault    int
	objects  int
	token    tokenID // the pod's service account token (workload identity)
	rotation bool    // carries the versions already written: read fresh
	deadline time.Duration
	// done reports success and, for a success, the earliest time Key Vault served one of the
	// values it returned (a value served before a rotation is the old version).
	done func(ok bool, oldest time.Duration)
}

type tokenID struct{ pod, epoch int }

type nodeProvider interface {
	mount(m *mount)
	// warm makes an identity's credential, client and (workload identity) the pod's token known,
	// as after the pod's first mount.
	warm(identity int, token tokenID, tokenAge time.Duration)
}

// --- Azure's provider ---

type perMountNode struct {
	w *world
	o Settings
}

func (n *perMountNode) warm(int, tokenID, time.Duration) {}

func (n *perMountNode) mount(m *mount) {
	n.w.token(true, func() {
		n.w.challenge(func() {
			oldest := time.Duration(math.MaxInt64)
			i := 0
			var next func()
			next = func() {
				if i == m.objects {
					m.done(true, oldest)
					return
				}
				n.fetch(m, 0, func(ok bool, servedAt time.Duration) {
					if !ok {
						m.done(false, 0)
						return
					}
					oldest = min(oldest, servedAt)
					i++
					next()
				})
			}
			next()
		})
	})
}

func (n *perMountNode) fetch(m *mount, retries int, done func(bool, time.Duration)) {
	n.w.read(m.vault, func(ok bool, servedAt, retryAfter time.Duration) {
		switch {
		case ok:
			done(true, servedAt)
		case retries >= n.o.AzureMaxRetries || (m.deadline > 0 && n.w.s.now+retryAfter > m.deadline):
			done(false, 0)
		default:
			n.w.s.after(retryAfter, func() { n.fetch(m, retries+1, done) })
		}
	})
}

// --- this provider ---

type sharedNode struct {
	w          *world
	o          Settings
	kind       IdentityKind
	limiters   map[int]*vaultLimiter
	identities map[int]*identity
}

// vaultLimiter paces the node's reads of one vault: identities the vault has served share the
// main budget, the others a tenth of it (probation).
type vaultLimiter struct{ proven, probation *bucket }

func newSharedNode(w *world, o Settings, kind IdentityKind) *sharedNode {
	return &sharedNode{w: w, o: o, kind: kind, limiters: map[int]*vaultLimiter{}, identities: map[int]*identity{}}
}

// identity is what a node keeps of one identity (for its one vault).
type identity struct {
	accepted   map[tokenID]bool     // workload identity tokens Entra ID accepted
	proving    map[tokenID][]func() // exchanges in flight, with who waits for them
	credential bool                 // a credential exists
	tokenUntil time.Duration        // its access token is valid until then (0: none yet)
	refreshing []func()             // waiting for a token request in flight (nil: none)
	challenged bool                 // the client has answered its challenge
	proven     bool                 // the vault has served it (until then: the probation limiter)
	gateBusy   bool                 // the client's first read is in flight
	gateWait   []func()
	flights    map[int]*flight
	kept       map[int]kept
}

type flight struct {
	started time.Duration
	waiters []func(ok bool, servedAt time.Duration)
}

type kept struct{ started, servedAt, until time.Duration }

func (n *sharedNode) identity(i int) *identity {
	id := n.identities[i]
	if id == nil {
		id = &identity{accepted: map[tokenID]bool{}, proving: map[tokenID][]func(){}, flights: map[int]*flight{}, kept: map[int]kept{}}
		n.identities[i] = id
	}
	return id
}

func (n *sharedNode) warm(i int, token tokenID, tokenAge time.Duration) {
	id := n.identity(i)
	id.credential, id.challenged, id.proven = true, true, true
	if id.tokenUntil == 0 {
		id.tokenUntil = n.w.s.now + n.o.TokenLifetime - tokenAge
	}
	if n.kind == WorkloadIdentity {
		id.accepted[token] = true
	}
}

func (n *sharedNode) mount(m *mount) {
	id := n.identity(m.identity)
	arrived := n.w.s.now
	reads := func() { n.reads(id, m, arrived) }
	if n.kind == ServicePrincipal || id.accepted[m.token] {
		reads()
		return
	}
	// A workload identity token not seen before is exchanged once (a new credential: discovery
	// and a token request); mounts with the same token wait for that exchange.
	if waiting, ok := id.proving[m.token]; ok {
		id.proving[m.token] = append(waiting, reads)
		return
	}
	id.proving[m.token] = []func(){reads}
	n.w.token(true, func() {
		id.accepted[m.token] = true
		if !id.credential { // the identity adopts the credential that proved the token, and its access token
			id.credential, id.tokenUntil = true, n.w.s.now+n.o.TokenLifetime
		}
		waiting := id.proving[m.token]
		delete(id.proving, m.token)
		for _, f := range waiting {
			f()
		}
	})
}

// reads reads the mount's objects, at most Parallelism at a time.
func (n *sharedNode) reads(id *identity, m *mount, arrived time.Duration) {
	var nb time.Duration = -1 // a kept result or a read in flight is taken if it started at or after nb
	if m.rotation {
		nb = arrived
	}
	started, inflight, pending, failed := 0, 0, m.objects, false
	oldest := time.Duration(math.MaxInt64)
	var pump func()
	finish := func(ok bool, servedAt time.Duration) {
		inflight--
		pending--
		if ok {
			oldest = min(oldest, servedAt)
		} else {
			failed = true
		}
		if pending == 0 {
			m.done(!failed, oldest)
			return
		}
		pump()
	}
	// pump starts reads while fewer than Parallelism are in flight (a kept result answers at
	// once, from within pump: the loop goes on with the next object).
	pump = func() {
		for inflight < n.o.Parallelism && started < m.objects {
			o := started
			started++
			inflight++
			n.read(id, m, o, nb, finish)
		}
	}
	pump()
}

func (n *sharedNode) read(id *identity, m *mount, o int, nb time.Duration, done func(bool, time.Duration)) {
	now := n.w.s.now
	if k, ok := id.kept[o]; ok && n.o.ResultTTL > 0 && now < k.until && k.started >= nb {
		done(true, k.servedAt)
		return
	}
	if f := id.flights[o]; f != nil && f.started >= nb {
		f.waiters = append(f.waiters, done)
		return
	}
	f := &flight{started: now, waiters: []func(bool, time.Duration){done}}
	id.flights[o] = f
	n.alone(id, func(release func()) {
		n.fetch(id, m, 1, func(ok bool, servedAt time.Duration) {
			release()
			if id.flights[o] == f {
				delete(id.flights, o)
			}
			if ok && n.o.ResultTTL > 0 {
				id.kept[o] = kept{started: f.started, servedAt: servedAt, until: n.w.s.now + n.o.ResultTTL}
			}
			for _, w := range f.waiters {
				w(ok, servedAt)
			}
		})
	})
}

// alone runs the client's first read by itself: the others wait until it has answered its
// challenge.
func (n *sharedNode) alone(id *identity, fn func(release func())) {
	if id.challenged {
		fn(func() {})
		return
	}
	if id.gateBusy {
		id.gateWait = append(id.gateWait, func() { n.alone(id, fn) })
		return
	}
	id.gateBusy = true
	fn(func() {
		id.challenged, id.gateBusy = true, false
		waiting := id.gateWait
		id.gateWait = nil
		for _, f := range waiting {
			f()
		}
	})
}

// fetch waits for the vault's limiter, then reads; a 429 is retried after its Retry-After.
func (n *sharedNode) fetch(id *identity, m *mount, attempt int, done func(bool, time.Duration)) {
	s := n.w.s
	vl := n.limiters[m.vault]
	if vl == nil {
		probation := float64(max(1, n.o.VaultBurst/10))
		vl = &vaultLimiter{
			proven:    &bucket{rate: n.o.VaultRateLimit, burst: float64(n.o.VaultBurst), tokens: float64(n.o.VaultBurst)},
			probation: &bucket{rate: n.o.VaultRateLimit / 10, burst: probation, tokens: probation},
		}
		n.limiters[m.vault] = vl
	}
	lim := vl.probation
	if id.proven {
		lim = vl.proven
	}
	wait, ok := lim.reserve(s.now, m.deadline)
	if !ok {
		done(false, 0)
		return
	}
	s.after(wait, func() {
		n.authorized(id, func() {
			n.w.read(m.vault, func(ok bool, servedAt, retryAfter time.Duration) {
				switch {
				case ok:
					id.proven = true
					done(true, servedAt)
				case attempt > n.o.MaxThrottleRetries || (m.deadline > 0 && s.now+retryAfter > m.deadline):
					done(false, 0)
				default:
					s.after(retryAfter, func() { n.fetch(id, m, attempt+1, done) })
				}
			})
		})
	})
}

// authorized runs fn once the identity's client can send an authorized read: the first read
// answers the challenge (and a service principal's credential gets its first token, with
// discovery); a token past its lifetime is refreshed once for everyone waiting.
func (n *sharedNode) authorized(id *identity, fn func()) {
	s := n.w.s
	if !id.challenged {
		n.w.challenge(func() { n.withToken(id, fn) })
		return
	}
	if id.tokenUntil > 0 && s.now < id.tokenUntil {
		fn()
		return
	}
	n.withToken(id, fn)
}

func (n *sharedNode) withToken(id *identity, fn func()) {
	s := n.w.s
	if id.tokenUntil > 0 && s.now < id.tokenUntil {
		fn()
		return
	}
	if id.refreshing != nil {
		id.refreshing = append(id.refreshing, fn)
		return
	}
	id.refreshing = []func(){fn}
	first := !id.credential
	id.credential = true
	n.w.token(first, func() {
		id.tokenUntil = s.now + n.o.TokenLifetime
		waiting := id.refreshing
		id.refreshing = nil
		for _, f := range waiting {
			f()
		}
	})
}

// bucket is a token bucket as golang.org/x/time/rate keeps it: a reservation may take the
// bucket below zero and then waits until it is repaid.
type bucket struct {
	rate, burst, tokens float64
	last                time.Duration
}

// reserve takes one token at now and returns how long to wait for it, or false (and takes
// nothing) when the wait would pass the deadline (0: none), as rate.Limiter.Wait does.
func (b *bucket) reserve(now, deadline time.Duration) (time.Duration, bool) {
	tokens := min(b.burst, b.tokens+b.rate*(now-b.last).Seconds())
	tokens--
	var wait time.Duration
	if tokens < 0 {
		wait = time.Duration(-tokens / b.rate * float64(time.Second))
	}
	if deadline > 0 && now+wait > deadline {
		return 0, false
	}
	b.tokens, b.last = tokens, now
	return wait, true
}
