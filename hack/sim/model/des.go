// Package model is a deterministic discrete-event model of a Kubernetes cluster whose pods mount
// Key Vault objects through the Secrets Store CSI Driver: the driver's rotation (the v1.5
// reconciler, one worker per node, or the v1.6 kubelet republish, one per pod), scale-outs, the
// provider on each node under one of two policies (Azure's provider: a credential, discovery, a
// challenge and one read after another per mount; this provider: per-identity reuse, shared
// reads and kept results per node, a per-vault limiter), Key Vault's per-vault budget with 429
// and Retry-After, and Entra ID's token requests. Time is simulated; a run is a pure function of
// its Scenario (seeded), so the same scenario always gives the same result.
package model

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// sim is the event loop: events run in time order, ties in the order they were scheduled.
type sim struct {
	now    time.Duration
	seq    uint64
	events eventHeap
	rng    *rand.Rand
}

type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = event{}
	*h = old[:len(old)-1]
	return e
}

func newSim(seed uint64) *sim {
	return &sim{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} //nolint:gosec // a seeded model must repeat itself, not be unpredictable
}

// at runs fn at time t (never before now).
func (s *sim) at(t time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.events, event{at: max(t, s.now), seq: s.seq, fn: fn})
}

// after runs fn d from now.
func (s *sim) after(d time.Duration, fn func()) { s.at(s.now+d, fn) }

// run processes events until none is left at or before end.
func (s *sim) run(end time.Duration) {
	for len(s.events) > 0 && s.events[0].at <= end {
		e := heap.Pop(&s.events).(event)
		s.now = e.at
		e.fn()
	}
	s.now = end
}

// uniform returns a duration in [0, d).
func (s *sim) uniform(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(s.rng.Int64N(int64(d)))
}
