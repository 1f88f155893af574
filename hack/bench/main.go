// Command bench measures mounts against the emulator with added latency (default 20 ms per Key
// Vault request, 50 ms per token request): for K objects and C concurrent mounts it reports cold
// (first mount of an identity) and warm (the same identity again) p50/p95 latency, warm mounts per
// second, the requests each mount made to Entra ID and Key Vault, and the provider's peak RSS.
// The provider runs as its own process with its production defaults, except the result cache,
// which is off so that every warm mount reads Key Vault, and the per-vault rate limit, which is
// raised so that it does not cap the larger cells.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	rounds := flag.Int("warm-rounds", 5, "warm rounds of C concurrent mounts per cell")
	flag.Parse()
	if err := run(*bin, *out, *kvLatency, *tokenLatency, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench failed:", err)
		os.Exit(1)
	}
}

var (
	objectCounts = []int{1, 10, 50}
	concurrency  = []int{1, 16, 64}
)

type cell struct {
	k, c               int
	cold, warm         []time.Duration
	warmWall           time.Duration
	coldReqs, warmReqs requests
	rssKB              int
	note               string
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

func run(bin, outFile string, kvLatency, tokenLatency time.Duration, rounds int) error {
	dir, err := os.MkdirTemp("", "akv-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	identities := 1 // the extra --parallel-fetches=16 cell
	for _, c := range concurrency {
		identities += c * len(objectCounts)
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
	prov, err := harness.StartProvider(dir, bin, endpoints,
		"--result-cache-ttl=0", "--vault-rate-limit=1000000", "--vault-burst=1000000", "--parallel-fetches=8")
	if err != nil {
		return err
	}
	defer prov.Stop() // stopping twice is harmless
	if err := harness.Admin(endpoints, http.MethodPut, "/admin/faults",
		map[string]string{"keyVaultLatency": kvLatency.String(), "tokenLatency": tokenLatency.String()}, nil); err != nil {
		return err
	}

	client := prov.Client
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
		start := time.Now()
		for range rounds {
			lat, _, err := round(client, endpoints.TenantID, ids, k)
			if err != nil {
				return res, err
			}
			res.warm = append(res.warm, lat...)
		}
		res.warmWall = time.Since(start)
		res.warmReqs = perMount(mid, counters(), len(ids)*rounds)
		res.rssKB = peakRSS(pid)
		fmt.Fprintf(os.Stderr, "K=%d C=%d done\n", k, len(ids))
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
	for _, k := range objectCounts {
		for _, c := range concurrency {
			res, err := measure(client, prov.Pid(), fresh(c), k)
			if err != nil {
				return err
			}
			cells = append(cells, res)
		}
	}

	// The same K=10 cell with every object of a mount read at once (more than the default 8).
	prov.Stop()
	prov16, err := harness.StartProvider(dir, bin, endpoints,
		"--result-cache-ttl=0", "--vault-rate-limit=1000000", "--vault-burst=1000000", "--parallel-fetches=16")
	if err != nil {
		return err
	}
	defer prov16.Stop()
	wide, err := measure(prov16.Client, prov16.Pid(), fresh(1), 10)
	if err != nil {
		return err
	}
	wide.note = "--parallel-fetches=16"
	cells = append(cells, wide)

	var b strings.Builder
	report(&b, cells, kvLatency, tokenLatency, rounds)
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(outFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(outFile, []byte(b.String()), 0o644)
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

func report(w io.Writer, cells []cell, kvLatency, tokenLatency time.Duration, rounds int) {
	fmt.Fprintf(w, "Measured %s on %s: emulator latency %v per Key Vault request, %v per token request; "+
		"%d warm rounds per cell; provider defaults except --result-cache-ttl=0 and no vault rate limit.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), hostInfo(), kvLatency, tokenLatency, rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "K\tC\tcold p50 ms\tcold p95 ms\twarm p50 ms\twarm p95 ms\twarm p50 / KV RTT\twarm mounts/s\t"+
		"cold token/disc/chal/KV per mount\twarm token/disc/chal/KV per mount\tprovider peak RSS MiB\tnote")
	for _, c := range cells {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%.2f\t%.1f\t%s\t%s\t%.1f\t%s\n", c.k, c.c,
			ms(pct(c.cold, 0.5)), ms(pct(c.cold, 0.95)), ms(pct(c.warm, 0.5)), ms(pct(c.warm, 0.95)),
			float64(pct(c.warm, 0.5))/float64(kvLatency), float64(len(c.warm))/c.warmWall.Seconds(),
			c.coldReqs, c.warmReqs, float64(c.rssKB)/1024, c.note)
	}
	tw.Flush()
}

func (r requests) String() string {
	return fmt.Sprintf("%.2g / %.2g / %.2g / %.3g", r.token, r.discovery, r.challenge, r.keyVault)
}

func hostInfo() string {
	n, _ := os.ReadFile("/proc/cpuinfo")
	cores := strings.Count(string(n), "processor\t:")
	return fmt.Sprintf("%d cores", cores)
}
