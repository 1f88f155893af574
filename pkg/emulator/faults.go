package emulator

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Faults are injected into the next requests. Counts are consumed one per
// request. In JSON, durations are strings such as "20ms".
type Faults struct {
	KeyVaultLatency    time.Duration // added to every Key Vault request
	TokenLatency       time.Duration // added to every token request (Entra and managed identity)
	Throttle           int           // next N Key Vault requests get 429 Throttled
	ThrottleRetryAfter string        // Retry-After on those 429s; "" omits the header
	Unavailable        int           // next N Key Vault requests get 503
	Drop               int           // next N Key Vault requests: connection closed, no response
	TokenFailures      int           // next N token requests get 500
	// ForeignNextLink: the next N list answers (any page of any list) carry a nextLink on another
	// host, the decoy listener (DecoyURL), with the path and query the real link would have; a
	// last page gets one too. A client that follows it sends the decoy its token.
	ForeignNextLink int
	// EmptyPages: the next N list requests get a page with no item whose nextLink is the request
	// itself, so a client that follows it asks again (N large: endless). When N runs out, the list
	// goes on from where it was.
	EmptyPages int
}

type faultsJSON struct {
	KeyVaultLatency    string `json:"keyVaultLatency,omitempty"`
	TokenLatency       string `json:"tokenLatency,omitempty"`
	Throttle           int    `json:"throttle,omitempty"`
	ThrottleRetryAfter string `json:"throttleRetryAfter,omitempty"`
	Unavailable        int    `json:"unavailable,omitempty"`
	Drop               int    `json:"drop,omitempty"`
	TokenFailures      int    `json:"tokenFailures,omitempty"`
	ForeignNextLink    int    `json:"foreignNextLink,omitempty"`
	EmptyPages         int    `json:"emptyPages,omitempty"`
}

// MarshalJSON writes durations as strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	j := faultsJSON{Throttle: f.Throttle, ThrottleRetryAfter: f.ThrottleRetryAfter, Unavailable: f.Unavailable,
		Drop: f.Drop, TokenFailures: f.TokenFailures, ForeignNextLink: f.ForeignNextLink, EmptyPages: f.EmptyPages}
	if f.KeyVaultLatency != 0 {
		j.KeyVaultLatency = f.KeyVaultLatency.String()
	}
	if f.TokenLatency != 0 {
		j.TokenLatency = f.TokenLatency.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads durations as strings ("20ms").
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out := Faults{Throttle: j.Throttle, ThrottleRetryAfter: j.ThrottleRetryAfter, Unavailable: j.Unavailable,
		Drop: j.Drop, TokenFailures: j.TokenFailures, ForeignNextLink: j.ForeignNextLink, EmptyPages: j.EmptyPages}
	var err error
	if j.KeyVaultLatency != "" {
		if out.KeyVaultLatency, err = time.ParseDuration(j.KeyVaultLatency); err != nil {
			return fmt.Errorf("keyVaultLatency: %w", err)
		}
	}
	if j.TokenLatency != "" {
		if out.TokenLatency, err = time.ParseDuration(j.TokenLatency); err != nil {
			return fmt.Errorf("tokenLatency: %w", err)
		}
	}
	if out.Throttle < 0 || out.Unavailable < 0 || out.Drop < 0 || out.TokenFailures < 0 || out.KeyVaultLatency < 0 || out.TokenLatency < 0 ||
		out.ForeignNextLink < 0 || out.EmptyPages < 0 {
		return fmt.Errorf("faults must not be negative")
	}
	*f = out
	return nil
}

// Counters count requests since start or the last ResetCounters.
type Counters struct {
	TokenRequests         int64            `json:"tokenRequests"`     // Entra token endpoint and managed identity
	DiscoveryRequests     int64            `json:"discoveryRequests"` // openid-configuration and instance discovery
	Challenges            int64            `json:"challenges"`        // Key Vault 401s sent
	KeyVaultGets          map[string]int64 `json:"keyVaultGets"`      // authenticated single GETs by "secret", "key", "certificate"
	KeyVaultLists         map[string]int64 `json:"keyVaultLists"`     // authenticated list pages by type
	KeyVaultListBytes     int64            `json:"keyVaultListBytes"` // bytes of the list pages served (bodies)
	Throttled             int64            `json:"throttled"`         // 429s sent
	Unavailable           int64            `json:"unavailable"`       // 503s sent
	Dropped               int64            `json:"dropped"`           // connections dropped
	TokenRequestsByClient map[string]int64 `json:"tokenRequestsByClient"`
	// DecoyRequests counts the requests the decoy listener (DecoyURL) received, and
	// DecoyAuthorizations those of them that carried an Authorization header (a leaked token).
	DecoyRequests       int64 `json:"decoyRequests"`
	DecoyAuthorizations int64 `json:"decoyAuthorizations"`
}

// KeyVaultGetsTotal sums KeyVaultGets over all types.
func (c Counters) KeyVaultGetsTotal() int64 {
	var n int64
	for _, v := range c.KeyVaultGets {
		n += v
	}
	return n
}

type stats struct {
	mu     sync.Mutex
	c      Counters
	faults Faults
}

func (s *stats) update(f func(c *Counters)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c.KeyVaultGets == nil {
		s.c.KeyVaultGets = map[string]int64{}
		s.c.KeyVaultLists = map[string]int64{}
		s.c.TokenRequestsByClient = map[string]int64{}
	}
	f(&s.c)
}

// Counters returns a snapshot of the counters.
func (e *Emulator) Counters() Counters {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	c := e.stats.c
	c.KeyVaultGets = copyMap(c.KeyVaultGets)
	c.KeyVaultLists = copyMap(c.KeyVaultLists)
	c.TokenRequestsByClient = copyMap(c.TokenRequestsByClient)
	return c
}

func copyMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ResetCounters zeroes all counters.
func (e *Emulator) ResetCounters() {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	e.stats.c = Counters{}
}

// SetFaults replaces the pending faults.
func (e *Emulator) SetFaults(f Faults) {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	e.stats.faults = f
}

// Faults returns the faults still pending.
func (e *Emulator) Faults() Faults {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	return e.stats.faults
}

// kvFault is what to do with one Key Vault request.
type kvFault int

const (
	faultNone kvFault = iota
	faultDrop
	faultThrottle
	faultUnavailable
)

// takeKVFault consumes one Key Vault fault, if any.
func (e *Emulator) takeKVFault() (kvFault, time.Duration, string) {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	f := &e.stats.faults
	switch {
	case f.Drop > 0:
		f.Drop--
		return faultDrop, f.KeyVaultLatency, ""
	case f.Throttle > 0:
		f.Throttle--
		return faultThrottle, f.KeyVaultLatency, f.ThrottleRetryAfter
	case f.Unavailable > 0:
		f.Unavailable--
		return faultUnavailable, f.KeyVaultLatency, ""
	}
	return faultNone, f.KeyVaultLatency, ""
}

// listFault is what to do with one list page.
type listFault int

const (
	listNormal listFault = iota
	listEmpty
	listForeign
)

// takeListFault consumes one list fault, if any: EmptyPages first, then ForeignNextLink.
func (e *Emulator) takeListFault() listFault {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	f := &e.stats.faults
	switch {
	case f.EmptyPages > 0:
		f.EmptyPages--
		return listEmpty
	case f.ForeignNextLink > 0:
		f.ForeignNextLink--
		return listForeign
	}
	return listNormal
}

// takeTokenFault consumes one token failure, if any.
func (e *Emulator) takeTokenFault() (bool, time.Duration) {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	f := &e.stats.faults
	if f.TokenFailures > 0 {
		f.TokenFailures--
		return true, f.TokenLatency
	}
	return false, f.TokenLatency
}
