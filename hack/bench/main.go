// Command bench measures mounts against the emulator with added latency (default 20 ms per Key
// Vault request, 50 ms per token request): for K objects and C concurrent mounts it reports cold
// (first mount of an identity) and warm (the same identity again) p50/p95 latency, warm mounts per
// second, the requests each mount made to Entra ID and Key Vault, the provider's own CPU time per
// warm mount (user+system from /proc/<pid>/stat) and its peak RSS.
// The provider runs as its own process with its production defaults, except the result cache,
// which is off so that every warm mount reads Key Vault, and the per-vault rate limit, which is
// raised so that it does not cap the larger cells. Extra rows: K=10 C=1 with every default (the
// result cache on) and with the previous default --parallel-fetches=8; with --baseline, K=10 at
// C=1 and C=64 of this build and of another provider binary, in alternating fresh processes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/akv-csi/provider/hack/internal/harness"
	"github.com/akv-csi/provider/pkg/emulator"
)

const (
	vault  = "kv-bench"
	secret = "bench-client-secret"
)

func main() {
	bin := flag.String("bin", "_output/bin", "folder with the provider and kv-emulator binaries")
	out := flag.String("out", "_output/bench.md", "file the table is written to")
	kvLatency := flag.Duration("kv-latency", 20*time.Millisecond, "latency added to each Key Vault request")
	tokenLatency := flag.Duration("token-latency", 50*time.Millisecond, "latency added to each token request")
	rounds := flag.Int("warm-rounds", 5, "warm rounds of C concurrent mounts per cell (at least)")
	minWarm := flag.Int("min-warm-mounts", 100, "more warm rounds until a cell has made this many warm mounts (CPU time is counted in 10 ms ticks)")
	only := flag.String("cells", "", "measure only these cells of the grid and the extra rows, as K:C,K:C (default: all)")
	baseline := flag.String("baseline", "", "folder with another provider binary (e.g. an earlier build) to measure in the same run: K=10 at C=1 and C=64, same settings")
	pairs := flag.Int("pairs", 3, "with --baseline: how many times this build and the baseline are measured, one after the other")
	profileDir := flag.String("profile", "", "instead of the table: profile warm mounts (--profile-k objects, --profile-c at once) for --profile-for, writing cpu.pprof and allocs.pprof here")
	profileK := flag.Int("profile-k", 10, "objects per mount with --profile")
	profileC := flag.Int("profile-c", 64, "concurrent mounts with --profile")
	profileFor := flag.Duration("profile-for", 15*time.Second, "length of the CPU profile with --profile")
	flag.Parse()
	if *profileDir != "" {
		if err := profile(*bin, *profileDir, *kvLatency, *tokenLatency, *profileK, *profileC, *profileFor, flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "bench failed:", err)
			os.Exit(1)
		}
		return
	}
	if *only != "" {
		cells, err := parseCells(*only)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench failed: --cells:", err)
			os.Exit(2)
		}
		keep = func(k, c int) bool { return cells[[2]int{k, c}] }
	}
	if err := run(*bin, *baseline, *pairs, *out, *kvLatency, *tokenLatency, *rounds, *minWarm); err != nil {
		fmt.Fprintln(os.Stderr, "bench failed:", err)
		os.Exit(1)
	}
}

var (
	objectCounts = []int{1, 10, 50}
	concurrency  = []int{1, 16, 64}
	// keep selects the cells measured (--cells).
	keep = func(_, _ int) bool { return true }
)

func parseCells(s string) (map[[2]int]bool, error) {
	cells := map[[2]int]bool{}
	for _, kc := range strings.Split(s, ",") {
		var k, c int
		if _, err := fmt.Sscanf(kc, "%d:%d", &k, &c); err != nil || k < 1 || c < 1 {
			return nil, fmt.Errorf("%q is not K:C", kc)
		}
		cells[[2]int{k, c}] = true
	}
	return cells, nil
}

type cell struct {
	k, c               int
	cold, warm         []time.Duration
	warmWall           time.Duration
	coldReqs, warmReqs requests
	rssKB              int
	cpuPerMount        time.Duration // provider user+system CPU per warm mount
	note               string
	pair               pairRole
}

// pairRole places a cell in the --baseline pairs.
type pairRole struct {
	n        int // 1-based pair; 0 when not in a pair
	baseline bool
}

// requests per mount, from the emulator's counters.
type requests struct{ token, discovery, challenge, keyVault float64 }

func perMount(before, after emulator.Counters, mounts int) requests {
	n := float64(mounts)
	kv := after.KeyVaultGetsTotal() - before.KeyVaultGetsTotal()
	for t, v := range after.KeyVaultLists {
		kv += v - before.KeyVaultLists[t]
	}
	return requests{
		token:     float64(after.TokenRequests-before.TokenRequests) / n,
		discovery: float64(after.DiscoveryRequests-before.DiscoveryRequests) / n,
		challenge: float64(after.Challenges-before.Challenges) / n,
		keyVault:  float64(kv) / n,
	}
}

// variant is a provider process and the cells measured on it: its binary folder, the flags it
// gets beyond the bench's own (--result-cache-ttl=0 and no vault rate limit, unless it says
// otherwise), and the note on its rows.
type variant struct {
	bin   string
	args  []string
	note  string
	cells [][2]int // K, C
	pair  pairRole
}

func run(bin, baseline string, pairs int, outFile string, kvLatency, tokenLatency time.Duration, minRounds, minWarm int) error {
	dir, err := os.MkdirTemp("", "akv-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	noLimit := []string{"--vault-rate-limit=1000000", "--vault-burst=1000000"}
	grid := variant{bin: bin, args: append([]string{"--result-cache-ttl=0"}, noLimit...)}
	for _, k := range objectCounts {
		for _, c := range concurrency {
			grid.cells = append(grid.cells, [2]int{k, c})
		}
	}
	variants := []variant{grid,
		// Every default, the result cache included: warm mounts within its TTL read nothing.
		{bin: bin, args: noLimit, note: "all defaults: --result-cache-ttl=10s", cells: [][2]int{{10, 1}}},
		// The default before issue 13: ten objects take two waves of reads.
		{bin: bin, args: append([]string{"--result-cache-ttl=0", "--parallel-fetches=8"}, noLimit...), note: "--parallel-fetches=8", cells: [][2]int{{10, 1}}},
	}
	// This build against the baseline, in pairs of fresh processes one after the other, so that
	// what else the machine is doing weighs on both alike.
	for i := range pairs {
		if baseline == "" {
			break
		}
		for _, v := range []struct {
			bin, note  string
			isBaseline bool
		}{{bin, "this build", false}, {baseline, "baseline " + baseline, true}} {
			variants = append(variants, variant{bin: v.bin, args: append([]string{"--result-cache-ttl=0"}, noLimit...),
				note: fmt.Sprintf("pair %d: %s", i+1, v.note), cells: [][2]int{{10, 1}, {10, 64}}, pair: pairRole{i + 1, v.isBaseline}})
		}
	}
	for i := range variants {
		v := &variants[i]
		v.cells = slices.DeleteFunc(v.cells, func(kc [2]int) bool { return !keep(kc[0], kc[1]) })
	}
	identities := 0
	for _, v := range variants {
		for _, kc := range v.cells {
			identities += kc[1]
		}
	}
	seedFile, err := writeSeed(dir, identities, objectCounts[len(objectCounts)-1])
	if err != nil {
		return err
	}
	emu, endpoints, err := harness.StartEmulator(dir, bin, seedFile)
	if err != nil {
		return err
	}
	defer emu.Stop()
	if err := harness.Admin(endpoints, http.MethodPut, "/admin/faults",
		map[string]string{"keyVaultLatency": kvLatency.String(), "tokenLatency": tokenLatency.String()}, nil); err != nil {
		return err
	}
	counters := func() (c emulator.Counters) {
		_ = harness.Admin(endpoints, http.MethodGet, "/admin/counters", nil, &c)
		return c
	}

	measure := func(client v1alpha1.CSIDriverProviderClient, pid int, ids []string, k int) (cell, error) {
		res := cell{k: k, c: len(ids)}
		before := counters()
		var err error
		if res.cold, _, err = round(client, endpoints.TenantID, ids, k); err != nil {
			return res, err
		}
		mid := counters()
		res.coldReqs = perMount(before, mid, len(ids))
		rounds := max(minRounds, (minWarm+len(ids)-1)/len(ids))
		cpu0, err := cpuTime(pid)
		if err != nil {
			return res, err
		}
		start := time.Now()
		for range rounds {
			lat, _, err := round(client, endpoints.TenantID, ids, k)
			if err != nil {
				return res, err
			}
			res.warm = append(res.warm, lat...)
		}
		res.warmWall = time.Since(start)
		cpu1, err := cpuTime(pid)
		if err != nil {
			return res, err
		}
		res.cpuPerMount = (cpu1 - cpu0) / time.Duration(len(ids)*rounds)
		res.warmReqs = perMount(mid, counters(), len(ids)*rounds)
		res.rssKB = peakRSS(pid)
		return res, nil
	}
	next := 0 // next unused identity: every cold mount is an identity's first
	fresh := func(n int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = spID(next)
			next++
		}
		return ids
	}
	var cells []cell
	for _, v := range variants {
		if len(v.cells) == 0 {
			continue
		}
		prov, err := harness.StartProvider(dir, v.bin, endpoints, v.args...)
		if err != nil {
			return err
		}
		for _, kc := range v.cells {
			res, err := measure(prov.Client, prov.Pid(), fresh(kc[1]), kc[0])
			if err != nil {
				prov.Stop()
				return err
			}
			res.note, res.pair = v.note, v.pair
			cells = append(cells, res)
			fmt.Fprintf(os.Stderr, "K=%d C=%d %s done\n", kc[0], kc[1], v.note)
		}
		prov.Stop()
	}

	var b strings.Builder
	report(&b, cells, kvLatency, tokenLatency, minRounds, minWarm)
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(outFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(outFile, []byte(b.String()), 0o644)
}

// profile runs the provider with pprof on loopback and takes a CPU profile and an allocation
// profile while C identities mount K objects again and again, warm. extra are more provider flags.
func profile(bin, outDir string, kvLatency, tokenLatency time.Duration, k, c int, length time.Duration, extra []string) error {
	dir, err := os.MkdirTemp("", "akv-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	seedFile, err := writeSeed(dir, c, k)
	if err != nil {
		return err
	}
	emu, endpoints, err := harness.StartEmulator(dir, bin, seedFile)
	if err != nil {
		return err
	}
	defer emu.Stop()
	port, err := freePort()
	if err != nil {
		return err
	}
	args := append([]string{"--result-cache-ttl=0", "--vault-rate-limit=1000000", "--vault-burst=1000000",
		"--enable-pprof", "--pprof-port=" + strconv.Itoa(port)}, extra...)
	prov, err := harness.StartProvider(dir, bin, endpoints, args...)
	if err != nil {
		return err
	}
	defer prov.Stop()
	if err := harness.Admin(endpoints, http.MethodPut, "/admin/faults",
		map[string]string{"keyVaultLatency": kvLatency.String(), "tokenLatency": tokenLatency.String()}, nil); err != nil {
		return err
	}
	ids := make([]string, c)
	for i := range ids {
		ids[i] = spID(i)
	}
	if _, _, err := round(prov.Client, endpoints.TenantID, ids, k); err != nil { // cold
		return err
	}
	if _, _, err := round(prov.Client, endpoints.TenantID, ids, k); err != nil { // first warm
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	pprofURL := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", port)
	cpu0, err := cpuTime(prov.Pid())
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		done <- fetch(fmt.Sprintf("%sprofile?seconds=%d", pprofURL, int(length.Seconds())), filepath.Join(outDir, "cpu.pprof"))
	}()
	mounts := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			cpu1, err := cpuTime(prov.Pid())
			if err != nil {
				return err
			}
			fmt.Printf("%d warm mounts of %d objects, %d at a time: provider CPU %.2f ms per mount; peak RSS %.1f MiB\n",
				mounts, k, c, float64(cpu1-cpu0)/float64(mounts)/float64(time.Millisecond), float64(peakRSS(prov.Pid()))/1024)
			return fetch(pprofURL+"allocs", filepath.Join(outDir, "allocs.pprof"))
		default:
		}
		if _, _, err := round(prov.Client, endpoints.TenantID, ids, k); err != nil {
			return err
		}
		mounts += c
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// fetch saves what a loopback URL answers (no proxy) to file.
func fetch(url, file string) error {
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}

// round runs one mount per identity, all at once, and returns their latencies.
func round(client v1alpha1.CSIDriverProviderClient, tenant string, ids []string, k int) ([]time.Duration, time.Duration, error) {
	objects := make([]string, k)
	for i := range objects {
		objects[i] = fmt.Sprintf("objectName: s%02d\nobjectType: secret", i)
	}
	lat := make([]time.Duration, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	start := time.Now()
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := harness.MountRequest(map[string]string{"keyvaultName": vault, "tenantId": tenant}, map[string]string{"clientid": id, "clientsecret": secret}, "", objects)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			t0 := time.Now()
			resp, err := client.Mount(ctx, req)
			lat[i] = time.Since(t0)
			if err == nil && len(resp.GetFiles()) != k {
				err = fmt.Errorf("%d files, want %d", len(resp.GetFiles()), k)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, 0, fmt.Errorf("mount: %w", err)
		}
	}
	return lat, time.Since(start), nil
}

func spID(i int) string { return fmt.Sprintf("bbbbbbbb-0000-4000-8000-%012d", i) }

func writeSeed(dir string, identities, objects int) (string, error) {
	s := &emulator.Seed{Deterministic: true, Vaults: []emulator.Vault{{Name: vault}}}
	for i := range objects {
		s.Vaults[0].Secrets = append(s.Vaults[0].Secrets, emulator.Secret{Name: fmt.Sprintf("s%02d", i), Versions: []emulator.SecretVersion{{Value: strings.Repeat("x", 64)}}})
	}
	for i := range identities {
		s.ServicePrincipals = append(s.ServicePrincipals, emulator.ServicePrincipal{ClientID: spID(i), Secrets: []string{secret}})
		s.Grants = append(s.Grants, emulator.Grant{Identity: spID(i), Vault: vault})
	}
	data, err := yaml.Marshal(s)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "seed.yaml")
	return path, os.WriteFile(path, data, 0o600)
}

// cpuTime reads the user+system CPU time a process has used, from /proc/<pid>/stat (utime and
// stime, fields 14 and 15, in USER_HZ ticks: 100 per second on Linux's exported ABI).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	const userHZ = 100
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// peakRSS reads VmHWM (peak resident set) of a process, in KiB.
func peakRSS(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p+0.5)]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

func report(w io.Writer, cells []cell, kvLatency, tokenLatency time.Duration, rounds, minWarm int) {
	fmt.Fprintf(w, "Measured %s on %s: emulator latency %v per Key Vault request, %v per token request; "+
		"at least %d warm rounds and %d warm mounts per cell; provider defaults except --result-cache-ttl=0 and no vault rate limit. "+
		"CPU: the provider's user+system time per warm mount; peak RSS: the provider's VmHWM so far.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), hostInfo(), kvLatency, tokenLatency, rounds, minWarm)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "K\tC\tcold p50 ms\tcold p95 ms\twarm p50 ms\twarm p95 ms\twarm p50 / KV RTT\twarm mounts/s\t"+
		"cold token/disc/chal/KV per mount\twarm token/disc/chal/KV per mount\tprovider CPU ms per warm mount\tprovider peak RSS MiB\tnote")
	for _, c := range cells {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%.2f\t%.1f\t%s\t%s\t%.2f\t%.1f\t%s\n", c.k, c.c,
			ms(pct(c.cold, 0.5)), ms(pct(c.cold, 0.95)), ms(pct(c.warm, 0.5)), ms(pct(c.warm, 0.95)),
			float64(pct(c.warm, 0.5))/float64(kvLatency), float64(len(c.warm))/c.warmWall.Seconds(),
			c.coldReqs, c.warmReqs, float64(c.cpuPerMount)/float64(time.Millisecond), float64(c.rssKB)/1024, c.note)
	}
	tw.Flush()
	reportPairs(w, cells)
}

// reportPairs prints, for each cell measured in --baseline pairs, how many times more CPU per warm
// mount the baseline took: over all pairs (total against total) and the range of single pairs.
func reportPairs(w io.Writer, cells []cell) {
	type key struct{ k, c int }
	type sums struct {
		this, base time.Duration
		ratios     []float64
	}
	byCell := map[key]*sums{}
	var order []key
	for _, c := range cells {
		if c.pair.n == 0 || c.pair.baseline {
			continue
		}
		for _, b := range cells {
			if b.pair.n != c.pair.n || !b.pair.baseline || b.k != c.k || b.c != c.c || c.cpuPerMount <= 0 {
				continue
			}
			kc := key{c.k, c.c}
			if byCell[kc] == nil {
				byCell[kc] = &sums{}
				order = append(order, kc)
			}
			s := byCell[kc]
			s.this += c.cpuPerMount
			s.base += b.cpuPerMount
			s.ratios = append(s.ratios, float64(b.cpuPerMount)/float64(c.cpuPerMount))
		}
	}
	if len(order) > 0 {
		fmt.Fprintln(w, "\nProvider CPU per warm mount, baseline / this build:")
	}
	for _, kc := range order {
		s := byCell[kc]
		fmt.Fprintf(w, "K=%d C=%d: %.2fx, total against total over %d pair(s) (%.2f-%.2fx in single pairs)\n", kc.k, kc.c,
			float64(s.base)/float64(s.this), len(s.ratios), slices.Min(s.ratios), slices.Max(s.ratios))
	}
}

func (r requests) String() string {
	return fmt.Sprintf("%.2g / %.2g / %.2g / %.3g", r.token, r.discovery, r.challenge, r.keyVault)
}

func hostInfo() string {
	n, _ := os.ReadFile("/proc/cpuinfo")
	cores := strings.Count(string(n), "processor\t:")
	return fmt.Sprintf("%d cores", cores)
}
