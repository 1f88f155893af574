package model

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func smallScenario(p Policy, d Driver) Scenario {
	sc := DefaultScenario()
	sc.Pods, sc.Nodes, sc.Policy, sc.Driver, sc.ScaleOut = 200, 10, p, d, 50
	return sc
}

// The same scenario gives the same result, to the request.
func TestRunIsDeterministic(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{PerMount, Shared} {
		for _, d := range []Driver{Reconciler, Republish} {
			a, err := Run(smallScenario(p, d))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := Run(smallScenario(p, d))
			if diff := cmp.Diff(a, b); diff != "" {
				t.Errorf("%v %v: two runs differ (-first +second):\n%s", p, d, diff)
			}
		}
	}
}

// What the policies cost, in requests the model can count exactly: every pod rotates once per
// poll (K reads each way), Azure's provider asks for a token per mount, this one per new pod
// token only, and every pod gets the new versions within one poll (plus its node's queue).
func TestPoliciesCostWhatTheyShould(t *testing.T) {
	t.Parallel()
	for _, d := range []Driver{Reconciler, Republish} {
		per, _ := Run(smallScenario(PerMount, d))
		ours, _ := Run(smallScenario(Shared, d))
		sc := smallScenario(Shared, d)
		demand := float64(sc.Pods*sc.Objects) * 10 / sc.Poll.Seconds() // reads per 10 s
		for _, r := range []Result{per, ours} {
			if r.ReadsPer10s < 0.9*demand || r.ReadsPer10s > 1.1*demand {
				t.Errorf("%v: %.0f reads per 10 s, want about %.0f (pods × objects per poll)", d, r.ReadsPer10s, demand)
			}
			if r.Throttled429 != 0 || r.FailedMounts != 0 || r.NotReached != 0 || r.NotMounted != 0 {
				t.Errorf("%v: %d 429s, %d failed mounts, %d pods without the new versions, %d not mounted: want none far below the budget",
					d, r.Throttled429, r.FailedMounts, r.NotReached, r.NotMounted)
			}
			if last := Quantile(r.RotationReach, 1); last > sc.Poll+10*time.Second {
				t.Errorf("%v: new versions reached the last pod after %v, want within a poll (%v)", d, last, sc.Poll)
			}
		}
		if per.TokensPer10s < demand/float64(sc.Objects)*0.9 {
			t.Errorf("%v: Azure's provider made %.1f token requests per 10 s, want one per mount (%.1f)", d, per.TokensPer10s, demand/float64(sc.Objects))
		}
		if ours.TokensPer10s*5 > per.TokensPer10s {
			t.Errorf("%v: this provider made %.1f token requests per 10 s, Azure's %.1f: want far fewer", d, ours.TokensPer10s, per.TokensPer10s)
		}
		// The scale-out: 50 replicas of one workload on 10 nodes share their reads on each node.
		if got, want := len(ours.ScaleOutLatency), sc.ScaleOut; got != want {
			t.Errorf("%v: %d new pods mounted, want %d", d, got, want)
		}
	}
}

// Key Vault's budget: a sliding window, refusals are not charged, Retry-After in whole seconds.
func TestKeyVaultBudget(t *testing.T) {
	t.Parallel()
	v := newKeyVault(3, 10*time.Second)
	for i, at := range []time.Duration{0, time.Second, 2 * time.Second} {
		if ok, _ := v.admit(at); !ok {
			t.Fatalf("read %d refused within the budget", i)
		}
	}
	ok, retry := v.admit(2500 * time.Millisecond)
	if ok || retry != 8*time.Second {
		t.Errorf("4th read in 10 s: served %v, Retry-After %v; want refused, 8s (the first read leaves the window at 10s)", ok, retry)
	}
	if ok, _ := v.admit(10 * time.Second); !ok {
		t.Error("a read when the first has left the window was refused")
	}
	if ok, _ := v.admit(10 * time.Second); ok {
		t.Error("a read past the budget was served: refused reads must not be charged, served ones must")
	}
}

// The limiter is golang.org/x/time/rate's token bucket, refusing (and taking nothing) a wait past
// the deadline.
func TestBucket(t *testing.T) {
	t.Parallel()
	b := &bucket{rate: 2, burst: 2, tokens: 2}
	var waits []time.Duration
	for range 4 {
		w, ok := b.reserve(0, 0)
		if !ok {
			t.Fatal("refused without a deadline")
		}
		waits = append(waits, w)
	}
	if diff := cmp.Diff([]time.Duration{0, 0, 500 * time.Millisecond, time.Second}, waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if _, ok := b.reserve(0, 1200*time.Millisecond); ok {
		t.Error("a wait of 1.5s was granted before a deadline at 1.2s")
	}
	if w, _ := b.reserve(0, 0); w != 1500*time.Millisecond {
		t.Errorf("after a refusal the next wait is %v, want 1.5s (the refusal took nothing)", w)
	}
}
