// Command sim runs the cluster model of hack/sim/model: how many Key Vault reads, 429s and Entra
// ID token requests 1,000 to 10,000 pods on 50 or 200 nodes cost with Azure's provider and with
// this one, whether that fits one vault's budget (4,000 reads per 10 s), the --vault-rate-limit
// per node that keeps a cluster inside it, and what else to change when it does not. It prints
// the tables (Markdown) and writes the plots. With --validate it first compares the model with
// the real provider binary on one node, 64 mounts included (go test runs the small cases).
//
// Every run is seeded and deterministic: the same flags print the same tables and draw the same
// plots.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/akv-csi/provider/hack/sim/model"
)

func main() {
	out := flag.String("out", "docs/sim", "folder the plots are written to (empty: no plots)")
	validate := flag.String("validate", "", "folder with the provider and kv-emulator binaries: first compare the model with them on one node")
	seed := flag.Uint64("seed", 1, "seed of every run")
	flag.Parse()
	start := time.Now()
	if err := run(os.Stdout, *out, *validate, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "sim failed:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "sim: done in %v\n", time.Since(start).Round(100*time.Millisecond))
}

// shape is a cluster size of the sizing table.
type shape struct{ pods, nodes int }

var shapes = []shape{{1000, 50}, {1000, 200}, {5000, 50}, {5000, 200}, {10000, 50}, {10000, 200}}

// budgetPerSec is Key Vault's budget for one vault as a rate: 4,000 reads per 10 s.
const budgetPerSec = 400.0

// recommendedLimit is the --vault-rate-limit per node that keeps a cluster of nodes within 90%
// of one vault's budget (per vault: each vault has its own limiter and budget).
func recommendedLimit(nodes int) float64 { return 0.9 * budgetPerSec / float64(nodes) }

// recommendedBurst is the --vault-burst that goes with it: one mount's reads at once
// (--parallel-fetches). The default 400 lets every node that was idle for a while send 400 reads
// at once, and the v1.5 reconciler makes nodes idle between polls: a few nodes polling together
// then exceed the vault's budget.
const recommendedBurst = 16

// job is one run of the model and what it is for.
type job struct {
	label string
	sc    model.Scenario
	res   model.Result
}

func run(w io.Writer, outDir, validateBin string, seed uint64) error {
	if validateBin != "" {
		if err := validate(w, validateBin); err != nil {
			return err
		}
	}

	var jobs []*job
	add := func(label string, sc model.Scenario) *job {
		sc.Seed = seed
		j := &job{label: label, sc: sc}
		jobs = append(jobs, j)
		return j
	}
	scenario := func(s shape, d model.Driver, p model.Policy) model.Scenario {
		sc := model.DefaultScenario()
		sc.Pods, sc.Nodes, sc.Driver, sc.Policy = s.pods, s.nodes, d, p
		sc.ScaleOut = 5 * s.nodes // a deployment of 5 replicas per node, 0 → all at once
		return sc
	}
	type row struct{ perMount, shared, limited *job }
	rows := map[string]row{}
	key := func(s shape, d model.Driver) string { return fmt.Sprintf("%d/%d/%v", s.pods, s.nodes, d) }
	for _, d := range []model.Driver{model.Reconciler, model.Republish} {
		for _, s := range shapes {
			r := row{perMount: add("per-mount", scenario(s, d, model.PerMount)), shared: add("shared", scenario(s, d, model.Shared))}
			limited := scenario(s, d, model.Shared)
			limited.Settings.VaultRateLimit, limited.Settings.VaultBurst = recommendedLimit(s.nodes), recommendedBurst
			r.limited = add(fmt.Sprintf("shared, --vault-rate-limit=%.3g --vault-burst=%d", limited.Settings.VaultRateLimit, recommendedBurst), limited)
			rows[key(s, d)] = r
		}
	}
	// What else fits 10,000 pods on 200 nodes into one vault's budget, with the defaults.
	big := shape{10000, 200}
	fewer := scenario(big, model.Reconciler, model.Shared)
	fewer.Objects = 3
	longer := scenario(big, model.Reconciler, model.Shared)
	longer.Poll = 4 * time.Minute
	longer.ScaleOutAt, longer.End = 10*time.Minute, 14*time.Minute // two polls of steady state
	vaults := scenario(big, model.Reconciler, model.Shared)
	vaults.Vaults = 2
	fixes := []*job{add("3 objects per SecretProviderClass", fewer), add("--rotation-poll-interval=4m", longer),
		add("2 vaults (half the workloads each)", vaults)}

	if err := runAll(jobs); err != nil {
		return err
	}

	fmt.Fprintf(w, "## Sizing: one vault, %d objects per SecretProviderClass, %d replicas per deployment (one workload identity each), rotation every %v\n\n",
		model.DefaultScenario().Objects, model.DefaultScenario().Replicas, model.DefaultScenario().Poll)
	fmt.Fprintf(w, "Driver %v. Steady state: Key Vault reads and 429s per 10 s (the budget: 4,000 reads per 10 s per vault), Entra ID token requests per 10 s; "+
		"then the flags per node that keep the cluster within 90%% of the budget, and what they give. It fits when, with them, no read is refused "+
		"and new versions still reach every pod within 1.25 polls.\n\n", model.Reconciler)
	fmt.Fprintln(w, "| pods | nodes | reads/10 s, Azure's / this | 429s/10 s at defaults, Azure's / this | token requests/10 s, Azure's / this | flags per node | with them: 429s, new version on every pod after | fits one vault |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, s := range shapes {
		r := rows[key(s, model.Reconciler)]
		l := r.limited.res
		fits := "yes"
		if l.Throttled429 > 0 || l.NotReached > 0 || model.Quantile(l.RotationReach, 1) > r.limited.sc.Poll*5/4 {
			fits = "**no**"
		}
		fmt.Fprintf(w, "| %d | %d | %.0f / %.0f | %.1f / %.1f | %.0f / %.1f | `--vault-rate-limit=%.3g --vault-burst=%d` | %d, %s | %s |\n", s.pods, s.nodes,
			r.perMount.res.ReadsPer10s, r.shared.res.ReadsPer10s, r.perMount.res.ThrottledPer10s, r.shared.res.ThrottledPer10s,
			r.perMount.res.TokensPer10s, r.shared.res.TokensPer10s, recommendedLimit(s.nodes), recommendedBurst, l.Throttled429, reach(l), fits)
	}
	for _, d := range []model.Driver{model.Reconciler, model.Republish} {
		fmt.Fprintf(w, "\n### Driver %v\n\n", d)
		fmt.Fprintln(w, "| pods | nodes | policy | reads/10 s | peak reads/10 s | 429s/10 s (steady) | 429s (all) | tokens/10 s | new version on every pod after | scale-out mount p50 / p99 | failed mounts |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
		for _, s := range shapes {
			r := rows[key(s, d)]
			for _, j := range []*job{r.perMount, r.shared, r.limited} {
				fmt.Fprintln(w, tableRow(s, j))
			}
		}
	}
	fmt.Fprintf(w, "\n### 10,000 pods on 200 nodes (driver %v, this provider's defaults): what fits one vault\n\n", model.Reconciler)
	fmt.Fprintln(w, "| change | reads/10 s per vault | peak reads/10 s | 429s/10 s (steady) | 429s (all) | new version on every pod after | failed mounts |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	base := rows[key(big, model.Reconciler)].shared
	for _, j := range append([]*job{{label: "none", res: base.res, sc: base.sc}}, fixes...) {
		r := j.res
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.1f | %d | %s | %d |\n", j.label, r.ReadsPer10s/float64(j.sc.Vaults),
			r.PeakReadsPer10s/float64(j.sc.Vaults), r.ThrottledPer10s, r.Throttled429, reach(r), r.FailedMounts)
	}

	if outDir == "" {
		return nil
	}
	show := rows[key(shape{5000, 200}, model.Reconciler)]
	if err := plots(outDir, "", []*job{show.perMount, show.shared, show.limited}, true); err != nil {
		return err
	}
	full := rows[key(big, model.Reconciler)]
	return plots(outDir, "10k-", []*job{full.perMount, full.shared, full.limited}, false)
}

func tableRow(s shape, j *job) string {
	r := j.res
	return fmt.Sprintf("| %d | %d | %s | %.0f | %.0f | %.1f | %d | %.1f | %s | %s / %s | %d |", s.pods, s.nodes, j.label,
		r.ReadsPer10s, r.PeakReadsPer10s, r.ThrottledPer10s, r.Throttled429, r.TokensPer10s, reach(r),
		short(model.Quantile(r.ScaleOutLatency, 0.5)), short(model.Quantile(r.ScaleOutLatency, 0.99)), r.FailedMounts)
}

// reach is how long the new versions took to reach every pod (or how many never got them).
func reach(r model.Result) string {
	if r.NotReached > 0 {
		return fmt.Sprintf("%d pods not by the end", r.NotReached)
	}
	return short(model.Quantile(r.RotationReach, 1))
}

func short(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return fmt.Sprintf("%.1f min", d.Minutes())
	case d >= time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// runAll runs the jobs on every core; each run is deterministic on its own.
func runAll(jobs []*job) error {
	next := make(chan *job)
	errs := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for j := range next {
				var err error
				if j.res, err = model.Run(j.sc); err != nil {
					errs <- fmt.Errorf("%s: %w", j.label, err)
				}
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs // nil when there was none
}

// validate compares the model with the binary on one node: the cases of make bench (C mounts
// with an identity each) and C replicas of one workload, cold and warm, with and without a
// result TTL.
func validate(w io.Writer, bin string) error {
	var cases []model.Case
	for _, shared := range []bool{false, true} {
		for _, c := range []int{1, 16, 64} {
			for _, k := range []int{1, 10} {
				for _, ttl := range []time.Duration{0, 10 * time.Second} {
					cases = append(cases, model.Case{Shared: shared, C: c, K: k, TTL: ttl})
				}
			}
		}
	}
	for _, shared := range []bool{false, true} {
		cases = append(cases, model.Case{Workload: true, Shared: shared, C: 64, K: 10, TTL: 10 * time.Second})
	}
	dir, err := os.MkdirTemp("", "akv-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	got, err := model.Compare(bin, dir, cases, 2)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "## The model against the provider binary, one node (requests: token / discovery / challenge / Key Vault reads; warm = 2 more rounds)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | phase | model | binary | within 10% |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	bad := 0
	for _, c := range got {
		ok := "yes"
		if !c.Within(0.10) {
			ok, bad = "**no**", bad+1
		}
		fmt.Fprintf(w, "| %v | %s | %s | %s | %s |\n", c.Case, c.Phase, model.FormatCounts(c.Model), model.FormatCounts(c.Binary), ok)
	}
	fmt.Fprintln(w)
	if bad > 0 {
		// go test holds the model to the cases of up to 16 mounts (TestModelMatchesTheBinary).
		fmt.Fprintf(w, "%d of %d phases differ by more than 10%%. The model has no CPU: the C mounts of a round reach its provider at the same "+
			"instant. The real provider on this machine's 2 cores, shared with the emulator and the mounting client, takes 64 mounts in over "+
			"more than a Key Vault round trip, so replicas of one identity that arrive late start reads of their own instead of joining "+
			"those in flight (more reads than the model, never fewer; with a result TTL they are kept and the difference disappears).\n\n", bad, len(got))
	}
	return nil
}

// legend names a run in a plot.
func legend(j *job) string {
	if j.sc.Policy == model.PerMount {
		return "Azure's provider (per mount)"
	}
	return strings.Replace(j.label, "shared", "this provider", 1)
}
