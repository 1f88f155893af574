package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/provider"
)

// Vaults of the listing tests, added at run time so the seed's vaults stay small.
const (
	vaultHuge = "kv-int-huge" // 25,000 secrets, each with 15 tags of Key Vault's maximum size
	vaultMany = "kv-int-many" // 25,000 secrets, each with 15 short tags
)

var (
	hugeBulk = emulator.BulkSecrets{Count: 25000, Tags: 15}                                       // 512/256 characters
	manyBulk = emulator.BulkSecrets{Count: 25000, Tags: 15, TagNameLength: 12, TagValueLength: 8} // tag-00-nnnnn=value-00
)

var listingVaults sync.Once

// addListingVaults adds the two large vaults, listed 25 secrets a page as Key Vault does (the
// seed's pageSize 2 is for the small vaults), and grants spOK their secrets.
func addListingVaults(t *testing.T) {
	t.Helper()
	var err error
	listingVaults.Do(func() {
		start := time.Now()
		for _, v := range []struct {
			name string
			bulk emulator.BulkSecrets
		}{{vaultHuge, hugeBulk}, {vaultMany, manyBulk}} {
			if err = em.AddVault(emulator.Vault{Name: v.name, PageSize: 25}); err != nil {
				return
			}
			if _, err = em.AddSecrets(v.name, v.bulk); err != nil {
				return
			}
			em.AddGrants(emulator.Grant{Identity: spOK, Vault: v.name, Types: []string{"secret"}})
		}
		t.Logf("2 x 25,000 secrets seeded in %v", time.Since(start).Round(time.Millisecond))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func vaultRequest(vault string, objs ...string) mountRequest {
	r := spRequest(spOK, objs...)
	r.params[config.KeyVaultName] = vault
	return r
}

// timedMount mounts r with a 30 s deadline and says how long it took.
func timedMount(t *testing.T, c v1alpha1.CSIDriverProviderClient, r mountRequest) (*v1alpha1.MountResponse, *status.Status, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := c.Mount(ctx, r.build(t))
	return resp, status.Convert(err), time.Since(start)
}

// TestListingAgainstTheBinary: selections over vaults of 25,000 secrets, and list answers that
// point elsewhere or never end, against the provider binary.
//
// Hostile answers (the emulator's faults) each answer within 2 s with a specific code, no
// request reaching the other host. A selection over 25,000 secrets with short tags lists 1,000
// pages and mounts its matches; over 25,000 secrets with 15 maximum-size tags (300 MB of pages),
// the list stops at MaxListBytes. Through all of it the provider's peak RSS stays under 100 MiB,
// and a normal mount succeeds afterwards.
func TestListingAgainstTheBinary(t *testing.T) {
	addListingVaults(t)
	c, proc := startBinary(t)
	t.Cleanup(func() { em.SetFaults(emulator.Faults{}) })
	selection := "objectNamePrefix: app-\nobjectType: secret\nobjectAlias: apps"
	if _, st, _ := timedMount(t, c, vaultRequest(vaultB, selection)); st.Code() != codes.OK { // the challenge, the token
		t.Fatalf("warm-up mount: %s %s", st.Code(), st.Message())
	}

	// Each case selects by another prefix: the listing of the warm-up is kept (--result-cache-ttl).
	hostile := []struct {
		name, prefix string
		faults       emulator.Faults
		code         codes.Code
		want         string
	}{
		{"a nextLink on another host", "app-a", emulator.Faults{ForeignNextLink: 1}, codes.Internal, "Key Vault's answer pointed the next page at another host"},
		{"endless empty pages", "app-d", emulator.Faults{EmptyPages: 1 << 30}, codes.InvalidArgument, "100 empty list pages in a row, each pointing at another (MaxEmptyPages)"},
	}
	for _, h := range hostile {
		em.ResetCounters()
		em.SetFaults(h.faults)
		_, st, took := timedMount(t, c, vaultRequest(vaultB, "objectNamePrefix: "+h.prefix+"\nobjectType: secret"))
		em.SetFaults(emulator.Faults{})
		got := em.Counters()
		if st.Code() != h.code || !strings.Contains(st.Message(), h.want) {
			t.Errorf("%s: got %s %.300q, want %s with %q", h.name, st.Code(), st.Message(), h.code, h.want)
		}
		if took > 2*time.Second {
			t.Errorf("%s: answered after %v, want within 2s", h.name, took.Round(time.Millisecond))
		}
		if got.DecoyRequests != 0 || got.DecoyAuthorizations != 0 {
			t.Errorf("%s: the other host got %d requests, %d with a token", h.name, got.DecoyRequests, got.DecoyAuthorizations)
		}
		t.Logf("%s: %s in %v after %d list pages", h.name, st.Code(), took.Round(time.Millisecond), got.KeyVaultLists["secret"])
	}

	// 25,000 secrets with short tags: two selections share one listing of 1,000 pages.
	em.ResetCounters()
	many := vaultRequest(vaultMany,
		"objectNamePrefix: bulk-0001\nobjectType: secret\nobjectAlias: a",
		fmt.Sprintf("objectNamePrefix: bulk-2499\nobjectTags: %s=%s\nobjectType: secret\nobjectAlias: b", tagOf(manyBulk, 0), manyBulk.BulkTags()[tagOf(manyBulk, 0)]))
	resp, st, took := timedMount(t, c, many)
	got := em.Counters()
	if st.Code() != codes.OK || len(resp.GetFiles()) != 20 || files(resp)["a/bulk-00010"] == nil || files(resp)["b/bulk-24999"] == nil {
		t.Errorf("25,000 short-tagged secrets: %s %.300q, %d files", st.Code(), st.Message(), len(resp.GetFiles()))
	}
	if got.KeyVaultLists["secret"] != 1000 || got.KeyVaultGets["secret"] != 20 {
		t.Errorf("%d list pages and %d reads, want one listing of 1000 pages and 20 reads", got.KeyVaultLists["secret"], got.KeyVaultGets["secret"])
	}
	t.Logf("25,000 secrets with 15 short tags: %s in %v, %d pages, %.1f MiB listed, %d reads",
		st.Code(), took.Round(time.Millisecond), got.KeyVaultLists["secret"], float64(got.KeyVaultListBytes)/(1<<20), got.KeyVaultGets["secret"])

	// 25,000 secrets with 15 maximum-size tags: the list stops at 64 MiB.
	em.ResetCounters()
	huge := vaultRequest(vaultHuge,
		fmt.Sprintf("objectNamePrefix: bulk-2499\nobjectTags: %s=%s\nobjectType: secret", tagOf(hugeBulk, 0), hugeBulk.BulkTags()[tagOf(hugeBulk, 0)]))
	_, st, took = timedMount(t, c, huge)
	got = em.Counters()
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "Key Vault's list answered more than 64 MiB (MaxListBytes)") {
		t.Errorf("25,000 secrets with maximum-size tags: %s %.300q", st.Code(), st.Message())
	}
	t.Logf("25,000 secrets with 15 maximum-size tags: %s in %v, %d pages, %.1f MiB listed",
		st.Code(), took.Round(time.Millisecond), got.KeyVaultLists["secret"], float64(got.KeyVaultListBytes)/(1<<20))

	if rss := peakRSS(t, proc.Pid); rss > 100<<20 {
		t.Errorf("peak RSS %.1f MiB, want under 100 MiB", float64(rss)/(1<<20))
	} else {
		t.Logf("peak RSS of the provider: %.1f MiB", float64(rss)/(1<<20))
	}
	resp, err := mount(t, c, spRequest(spOK, plainSecret))
	if err != nil || string(files(resp)["plain"].GetContents()) != plainValue {
		t.Fatalf("a normal mount afterwards: %v", err)
	}

	// The provider in this process (whose log the test binary checks) refuses the other host too.
	inProcess := startProvider(t, provider.Options{})
	em.ResetCounters()
	em.SetFaults(emulator.Faults{ForeignNextLink: 1})
	wantMountError(t, inProcess, vaultRequest(vaultB, selection), codes.Internal, "Key Vault's answer pointed the next page at another host")
	em.SetFaults(emulator.Faults{})
	if got := em.Counters(); got.DecoyRequests != 0 {
		t.Errorf("in process: the other host got %d requests", got.DecoyRequests)
	}
	mustMount(t, inProcess, vaultRequest(vaultB, selection))
}

// tagOf is the name of tag i of b.
func tagOf(b emulator.BulkSecrets, i int) string {
	prefix := fmt.Sprintf("tag-%02d-", i)
	for k := range b.BulkTags() {
		if strings.HasPrefix(k, prefix) {
			return k
		}
	}
	return ""
}
