package model

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Driver is how the Secrets Store CSI Driver polls for rotation.
type Driver int

const (
	// Reconciler is driver v1.5's rotation reconciler: on each node, every Poll, every pod's
	// mount is queued and ONE worker mounts them one after another, with the versions already
	// written (so this provider reads fresh); a failed one is queued again after 5 ms, doubling.
	Reconciler Driver = iota
	// Republish is driver v1.6: the kubelet republishes each pod's volume every Poll, each pod
	// on its own, without versions (so this provider may serve a result kept within its TTL).
	Republish
)

func (d Driver) String() string {
	if d == Reconciler {
		return "v1.5 reconciler"
	}
	return "v1.6 republish"
}

// Scenario is one run of the model.
type Scenario struct {
	Seed   uint64
	Policy Policy
	Driver Driver
	Kind   IdentityKind

	Nodes    int
	Pods     int // running from the start: Pods/Replicas deployments, one identity each
	Replicas int
	Objects  int // objects per SecretProviderClass (all secrets, one vault per deployment)
	Vaults   int // deployment d reads vault d % Vaults

	Poll         time.Duration // --rotation-poll-interval (v1.5) or the republish period (v1.6)
	TokenRefresh time.Duration // the kubelet refreshes a pod's service account token this often

	// RotateAt: every secret gets a new version; the model reports when each running pod has it.
	RotateAt time.Duration
	// ScaleOutAt: one more deployment goes from 0 to ScaleOut replicas, its pods starting over
	// ScaleOutSpread; the model reports their mount latency (to the first successful mount).
	ScaleOutAt     time.Duration
	ScaleOut       int
	ScaleOutSpread time.Duration
	// MountDeadline is the kubelet's deadline for a pod's mount (v1.6 republish too); v1.5
	// rotation mounts have none.
	MountDeadline time.Duration

	// Measure counts requests in [Measure, End); the steady state is [Measure, ScaleOutAt) when
	// there is a scale-out.
	Measure, End time.Duration

	Net      Network
	Budget   int // Key Vault reads per BudgetWindow per vault
	Window   time.Duration
	Settings Settings
}

// DefaultScenario is a cluster with the driver's and the provider's defaults, Key Vault's budget
// and in-region latencies; Nodes, Pods and the policy are the caller's.
func DefaultScenario() Scenario {
	return Scenario{
		Seed: 1, Policy: Shared, Driver: Reconciler, Kind: WorkloadIdentity,
		Nodes: 50, Pods: 1000, Replicas: 10, Objects: 5, Vaults: 1,
		Poll: 2 * time.Minute, TokenRefresh: 48 * time.Minute,
		RotateAt: 3 * time.Minute, ScaleOutAt: 6 * time.Minute, ScaleOut: 250, ScaleOutSpread: 5 * time.Second,
		MountDeadline: 2 * time.Minute,
		// The steady state, [Measure, ScaleOutAt), is two polls long: every pod rotates in it
		// exactly twice, whatever the phases of the nodes' pollers.
		Measure: 2 * time.Minute, End: 10 * time.Minute,
		Net:    Network{KeyVault: 20 * time.Millisecond, Token: 100 * time.Millisecond, Discovery: 30 * time.Millisecond},
		Budget: 4000, Window: 10 * time.Second,
		Settings: DefaultSettings(),
	}
}

// Result is what a run measured.
type Result struct {
	Counts
	// Per 10 s of the steady state: Key Vault reads served, 429s and token requests (means).
	ReadsPer10s, ThrottledPer10s, TokensPer10s float64
	// The busiest 10 s (sliding by 1 s) of the measured interval, scale-out included.
	PeakReadsPer10s float64
	// Throttled429 counts the 429s of the whole measured interval.
	Throttled429 int
	// Rotation: time from RotateAt until each pod running then had mounted the new versions.
	RotationReach []time.Duration
	NotReached    int // pods that had not by End
	// ScaleOut: each new pod's time from start to its first successful mount.
	ScaleOutLatency []time.Duration
	NotMounted      int // new pods with no successful mount by End
	FailedMounts    int
}

type pod struct {
	id, deployment, node int
	tokenPhase           time.Duration
	running              bool
	tracked              bool // running at RotateAt
	reached              bool
	queued               bool // v1.5: in its node's work queue
	fails                int  // v1.5: consecutive failures (the queue's backoff)
}

type cluster struct {
	sc        Scenario
	s         *sim
	w         *world
	nodes     []nodeProvider
	pods      []*pod
	byNode    [][]*pod
	queues    [][]*pod // v1.5 work queue per node
	busy      []bool   // v1.5 worker per node
	res       *Result
	rotatedAt time.Duration
}

// Run runs the scenario.
func Run(sc Scenario) (Result, error) {
	if err := sc.check(); err != nil {
		return Result{}, err
	}
	c := &cluster{sc: sc, s: newSim(sc.Seed), res: &Result{}, rotatedAt: -1}
	c.w = &world{s: c.s, net: sc.Net, counts: &c.res.Counts}
	for range sc.Vaults {
		c.w.vaults = append(c.w.vaults, newKeyVault(sc.Budget, sc.Window))
	}
	for range sc.Nodes {
		if sc.Policy == PerMount {
			c.nodes = append(c.nodes, &perMountNode{w: c.w, o: sc.Settings})
		} else {
			c.nodes = append(c.nodes, newSharedNode(c.w, sc.Settings, sc.Kind))
		}
	}
	c.byNode = make([][]*pod, sc.Nodes)
	c.queues = make([][]*pod, sc.Nodes)
	c.busy = make([]bool, sc.Nodes)

	deployments := sc.Pods / sc.Replicas
	c.place(deployments, sc.Replicas, true)
	if sc.ScaleOut > 0 {
		first := len(c.pods)
		c.place(1, sc.ScaleOut, false)
		for _, p := range c.pods[first:] {
			c.s.at(sc.ScaleOutAt+c.s.uniform(sc.ScaleOutSpread), func() { c.start(p, c.s.now, 0) })
		}
	}
	for _, p := range c.pods {
		if p.running {
			age := c.s.uniform(sc.Settings.TokenLifetime)
			c.nodes[p.node].warm(p.deployment, c.token(p), age)
			if sc.Driver == Republish {
				c.republish(p, c.s.uniform(sc.Poll))
			}
		}
	}
	if sc.Driver == Reconciler {
		for n := range sc.Nodes {
			c.tick(n, c.s.uniform(sc.Poll))
		}
	}
	c.s.at(sc.RotateAt, func() {
		c.rotatedAt = c.s.now
		for _, p := range c.pods {
			p.tracked = p.running
		}
	})
	c.s.run(sc.End)
	c.summarize()
	return *c.res, nil
}

func (sc Scenario) check() error {
	switch {
	case sc.Nodes < 1 || sc.Replicas < 1 || sc.Objects < 1 || sc.Vaults < 1:
		return fmt.Errorf("nodes, replicas, objects and vaults must be at least 1")
	case sc.Pods%sc.Replicas != 0:
		return fmt.Errorf("pods (%d) must be a multiple of replicas (%d)", sc.Pods, sc.Replicas)
	case sc.Poll <= 0 || sc.End <= sc.Measure || sc.Budget < 1 || sc.Window <= 0:
		return fmt.Errorf("poll, the measured interval and the budget must be positive")
	case sc.Settings.Parallelism < 1 || sc.Settings.VaultRateLimit <= 0 || sc.Settings.VaultBurst < 1:
		return fmt.Errorf("parallelism, vault rate limit and burst must be positive")
	}
	return nil
}

// place adds deployments of replicas pods, spread over the nodes as a topology spread
// constraint would: replica j of a deployment on node (offset + j) mod Nodes.
func (c *cluster) place(deployments, replicas int, running bool) {
	base := 0
	if len(c.pods) > 0 {
		base = c.pods[len(c.pods)-1].deployment + 1
	}
	for d := range deployments {
		offset := c.s.rng.IntN(c.sc.Nodes)
		for j := range replicas {
			p := &pod{id: len(c.pods), deployment: base + d, node: (offset + j) % c.sc.Nodes,
				tokenPhase: c.s.uniform(c.sc.TokenRefresh), running: running}
			c.pods = append(c.pods, p)
			c.byNode[p.node] = append(c.byNode[p.node], p)
		}
	}
}

// token is the pod's current service account token.
func (c *cluster) token(p *pod) tokenID {
	return tokenID{pod: p.id, epoch: int((c.s.now + p.tokenPhase) / c.sc.TokenRefresh)}
}

func (c *cluster) mount(p *pod, rotation bool, deadline time.Duration, done func(ok bool)) {
	c.nodes[p.node].mount(&mount{
		identity: p.deployment, vault: p.deployment % c.sc.Vaults, objects: c.sc.Objects,
		token: c.token(p), rotation: rotation, deadline: deadline,
		done: func(ok bool, oldest time.Duration) {
			if !ok {
				c.res.FailedMounts++
			} else if p.tracked && !p.reached && c.rotatedAt >= 0 && oldest >= c.rotatedAt {
				p.reached = true
				c.res.RotationReach = append(c.res.RotationReach, c.s.now-c.rotatedAt)
			}
			done(ok)
		},
	})
}

// start is a new pod's mount by the kubelet, retried with its backoff (0.5 s doubling, at most
// 2m2s) until it succeeds.
func (c *cluster) start(p *pod, since time.Duration, attempt int) {
	c.mount(p, false, c.s.now+c.sc.MountDeadline, func(ok bool) {
		if ok {
			p.running = true
			c.res.ScaleOutLatency = append(c.res.ScaleOutLatency, c.s.now-since)
			if c.sc.Driver == Republish {
				c.republish(p, c.sc.Poll)
			}
			return
		}
		backoff := min(500*time.Millisecond<<min(attempt, 10), 122*time.Second)
		c.s.after(backoff, func() { c.start(p, since, attempt+1) })
	})
}

// republish is v1.6: the pod's volume mounted again every Poll.
func (c *cluster) republish(p *pod, in time.Duration) {
	c.s.after(in, func() {
		c.mount(p, false, c.s.now+c.sc.MountDeadline, func(bool) {})
		c.republish(p, c.sc.Poll)
	})
}

// tick is v1.5: every Poll the node's running pods are queued (once each).
func (c *cluster) tick(n int, in time.Duration) {
	c.s.after(in, func() {
		for _, p := range c.byNode[n] {
			c.enqueue(p)
		}
		c.tick(n, c.sc.Poll)
	})
}

func (c *cluster) enqueue(p *pod) {
	if !p.running || p.queued {
		return
	}
	p.queued = true
	c.queues[p.node] = append(c.queues[p.node], p)
	c.work(p.node)
}

// work is the node's one rotation worker.
func (c *cluster) work(n int) {
	if c.busy[n] || len(c.queues[n]) == 0 {
		return
	}
	p := c.queues[n][0]
	c.queues[n] = c.queues[n][1:]
	p.queued = false
	c.busy[n] = true
	c.mount(p, true, 0, func(ok bool) {
		c.busy[n] = false
		if ok {
			p.fails = 0
		} else {
			p.fails++
			backoff := min(5*time.Millisecond<<min(p.fails-1, 30), 1000*time.Second)
			c.s.after(backoff, func() { c.enqueue(p) })
		}
		c.work(n)
	})
}

func (c *cluster) summarize() {
	r, sc := c.res, c.sc
	from, to := int(sc.Measure/time.Second), int(sc.End/time.Second)
	steady := to
	if sc.ScaleOut > 0 && sc.ScaleOutAt > sc.Measure && sc.ScaleOutAt < sc.End {
		steady = int(sc.ScaleOutAt / time.Second)
	}
	sum := func(series []int, from, to int) int {
		n := 0
		for i := from; i < to && i < len(series); i++ {
			n += series[i]
		}
		return n
	}
	per10 := func(series []int) float64 { return float64(sum(series, from, steady)) * 10 / float64(steady-from) }
	r.ReadsPer10s, r.ThrottledPer10s, r.TokensPer10s = per10(r.ReadsPerSec), per10(r.ThrottledPerSec), per10(r.TokensPerSec)
	r.Throttled429 = sum(r.ThrottledPerSec, from, to)
	window := int(sc.Window / time.Second)
	for i := from; i+window <= to; i++ {
		sum := 0
		for j := i; j < i+window && j < len(r.ReadsPerSec); j++ {
			sum += r.ReadsPerSec[j]
		}
		r.PeakReadsPer10s = max(r.PeakReadsPer10s, float64(sum)*10/float64(window))
	}
	for _, p := range c.pods {
		if p.tracked && !p.reached {
			r.NotReached++
		}
		if !p.running {
			r.NotMounted++
		}
	}
	slices.Sort(r.RotationReach)
	slices.Sort(r.ScaleOutLatency)
}

// Quantile returns the q-quantile of sorted durations (0 when empty).
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
