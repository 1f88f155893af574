package model

import (
	"time"
)

// NodeRun is one node mounting in rounds, as make bench drives the real provider: each round's
// mounts arrive together, the next round when every mount of the one before has answered.
type NodeRun struct {
	Policy   Policy
	Kind     IdentityKind
	Net      Network
	Settings Settings
	Rounds   [][]NodeMount
}

// NodeMount is one Mount call of a round.
type NodeMount struct {
	Identity int // a pod of the deployment whose identity this is
	Pod      int // the pod (its service account token, for workload identity)
	Objects  int
	Rotation bool // carries the versions already written
}

// RunNode runs the rounds on one node with an unlimited Key Vault budget and returns the
// requests each round made.
func RunNode(r NodeRun) []Counts {
	s := newSim(1)
	var counts Counts
	w := &world{s: s, net: r.Net, counts: &counts, vaults: []*keyVault{newKeyVault(0, time.Second)}}
	var node nodeProvider = &perMountNode{w: w, o: r.Settings}
	if r.Policy == Shared {
		node = newSharedNode(w, r.Settings, r.Kind)
	}
	out := make([]Counts, 0, len(r.Rounds))
	var round func(i int)
	round = func(i int) {
		if i == len(r.Rounds) {
			return
		}
		before := counts
		pending := len(r.Rounds[i])
		for _, m := range r.Rounds[i] {
			node.mount(&mount{identity: m.Identity, objects: m.Objects, token: tokenID{pod: m.Pod}, rotation: m.Rotation,
				done: func(bool, time.Duration) {
					if pending--; pending == 0 {
						out = append(out, diff(counts, before))
						round(i + 1)
					}
				}})
		}
	}
	round(0)
	s.run(1 << 62)
	return out
}

func diff(a, b Counts) Counts {
	return Counts{Reads: a.Reads - b.Reads, Throttled: a.Throttled - b.Throttled, Challenges: a.Challenges - b.Challenges,
		Tokens: a.Tokens - b.Tokens, Discovery: a.Discovery - b.Discovery}
}
