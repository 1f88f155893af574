package model

import (
	"time"
)

// Counts are requests to Key Vault and Entra ID, in total and per second of simulated time.
type Counts struct {
	Reads      int // Key Vault reads served (200)
	Throttled  int // Key Vault 429s
	Challenges int // Key Vault 401 challenges (not charged to the budget)
	Tokens     int // Entra ID token requests
	Discovery  int // Entra ID discovery requests (OpenID configuration, instance discovery)

	// Per second: index i counts [i s, i+1 s).
	ReadsPerSec, ThrottledPerSec, TokensPerSec []int
}

func bump(series *[]int, t time.Duration) {
	i := int(t / time.Second)
	for len(*series) <= i {
		*series = append(*series, 0)
	}
	(*series)[i]++
}

// keyVault is one vault's budget: at most Budget reads served in any Window (Key Vault: 4,000
// per 10 s per vault per region). A read past it is answered 429 with a Retry-After, in whole
// seconds, until the window admits it; a refused read is not charged. A budget of 0 admits all.
type keyVault struct {
	budget int
	window time.Duration
	served []time.Duration // ring of the last budget serve times
	next   int
	count  int
}

func newKeyVault(budget int, window time.Duration) *keyVault {
	return &keyVault{budget: budget, window: window, served: make([]time.Duration, budget)}
}

// admit decides a read arriving at t: served, or refused with the Retry-After to send.
func (v *keyVault) admit(t time.Duration) (bool, time.Duration) {
	if v.budget == 0 { // no budget
		return true, 0
	}
	if v.count == v.budget {
		oldest := v.served[v.next]
		if t-oldest < v.window {
			wait := oldest + v.window - t
			secs := (wait + time.Second - 1) / time.Second
			return false, max(secs, 1) * time.Second
		}
	} else {
		v.count++
	}
	v.served[v.next] = t
	v.next = (v.next + 1) % v.budget
	return true, 0
}

// world is what every node's provider talks to: the vaults and Entra ID, over the network.
type world struct {
	s      *sim
	net    Network
	vaults []*keyVault
	counts *Counts
}

// Network is how long each kind of request takes (a full round trip).
type Network struct {
	KeyVault  time.Duration // a Key Vault request (challenge, read, 429)
	Token     time.Duration // an Entra ID token request
	Discovery time.Duration // an Entra ID discovery request
}

// read sends a Key Vault read of vault v now: done runs one round trip later with whether it was
// served, the time Key Vault decided it (the version current then is the one returned), and the
// Retry-After of a 429.
func (w *world) read(v int, done func(ok bool, servedAt, retryAfter time.Duration)) {
	w.s.after(w.net.KeyVault/2, func() {
		at := w.s.now
		ok, retry := w.vaults[v].admit(at)
		if ok {
			w.counts.Reads++
			bump(&w.counts.ReadsPerSec, at)
		} else {
			w.counts.Throttled++
			bump(&w.counts.ThrottledPerSec, at)
		}
		w.s.after(w.net.KeyVault-w.net.KeyVault/2, func() { done(ok, at, retry) })
	})
}

// challenge sends a request without a token: Key Vault answers 401 with its challenge.
func (w *world) challenge(done func()) {
	w.counts.Challenges++
	w.s.after(w.net.KeyVault, done)
}

// token runs a credential's first token request: with discovery (a new credential asks for the
// OpenID configuration and instance discovery first), or alone (a credential refreshing).
func (w *world) token(discovery bool, done func()) {
	d := w.net.Token
	if discovery {
		w.counts.Discovery += 2
		d += 2 * w.net.Discovery
	}
	w.s.after(d-w.net.Token, func() {
		w.counts.Tokens++
		bump(&w.counts.TokensPerSec, w.s.now)
		w.s.after(w.net.Token, done)
	})
}
