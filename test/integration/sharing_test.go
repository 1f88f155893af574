package integration

import (
	"context"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/metrics"
	"github.com/akv-csi/provider/pkg/provider"
)

func spRequest(clientID string, objs ...string) mountRequest {
	return mountRequest{
		params:  map[string]string{config.KeyVaultName: vault, config.TenantID: tenant, config.Objects: objects(objs...)},
		secrets: map[string]string{"clientid": clientID, "clientsecret": spSecret},
	}
}

var threeObjects = []string{"objectName: plain\nobjectType: secret", "objectName: rsa\nobjectType: key", "objectName: web-pfx\nobjectType: cert"}

// TestSixteenPodsShareReads: 16 pods of one workload (same service account, same
// SecretProviderClass, each with its own token as the kubelet gives them) mounting at once make at
// most K Key Vault reads for K objects. Each pod's token is exchanged once at Entra ID before it
// may share anything (that exchange is the proof that it is this identity's); when the pods
// mount again with the same tokens, nothing is exchanged.
func TestSixteenPodsShareReads(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{ResultTTL: 10 * time.Second}})
	reqs := make([]mountRequest, 16)
	for i := range reqs {
		reqs[i] = mountRequest{token: wiToken(t, "default", "app-sa"), params: map[string]string{
			config.KeyVaultName: vault, config.TenantID: tenant, config.ClientID: wiApp, config.Objects: objects(threeObjects...)}}
	}
	burst := func() {
		var wg sync.WaitGroup
		errs := make(chan error, len(reqs))
		for _, req := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := mount(t, c, req)
				if err == nil && len(resp.GetFiles()) != 3 {
					err = status.Errorf(codes.Internal, "%d files", len(resp.GetFiles()))
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	em.ResetCounters()
	burst()
	got := em.Counters()
	if total := got.KeyVaultGetsTotal(); total > 3 {
		t.Errorf("16 concurrent mounts of 3 objects made %d Key Vault GETs, want at most 3 (%v)", total, got.KeyVaultGets)
	}
	if got.TokenRequests != 16 {
		t.Errorf("16 pods with 16 tokens made %d token requests, want 16 (one exchange per new token)", got.TokenRequests)
	}
	time.Sleep(20 * time.Millisecond)
	em.ResetCounters()
	burst()
	if got := em.Counters(); got.TokenRequests != 0 || got.KeyVaultGetsTotal() > 3 {
		t.Errorf("the same 16 pods mounting again made %d token requests and %d GETs, want 0 and at most 3", got.TokenRequests, got.KeyVaultGetsTotal())
	}
}

// TestSharingNeverCrossesIdentities: an identity the vault denies always fails, also while another
// identity's identical reads are in flight or kept.
func TestSharingNeverCrossesIdentities(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{ResultTTL: 10 * time.Second}})
	for round := range 5 {
		var wg sync.WaitGroup
		var okErr, deniedErr error
		wg.Add(2)
		go func() { defer wg.Done(); _, okErr = mount(t, c, spRequest(spOK, threeObjects...)) }()
		go func() { defer wg.Done(); _, deniedErr = mount(t, c, spRequest(spDenied, threeObjects...)) }()
		wg.Wait()
		if okErr != nil {
			t.Errorf("round %d: the allowed identity failed: %v", round, okErr)
		}
		if status.Code(deniedErr) != codes.PermissionDenied {
			t.Errorf("round %d: the denied identity got %v, want PermissionDenied", round, deniedErr)
		}
	}
	// Same client ID, wrong secret: a different identity, so Entra ID is asked and refuses.
	req := spRequest(spOK, threeObjects...)
	req.secrets["clientsecret"] = "not-the-secret"
	if _, err := mount(t, c, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a wrong secret for a cached client ID got %v, want Unauthenticated", err)
	}
}

// TestThrottling: a 429 without Retry-After is retried with backoff; one whose Retry-After would
// outlive the driver's deadline fails at once as Unavailable and says so.
func TestThrottling(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{ThrottleBackoff: 5 * time.Millisecond}})
	req := spRequest(spOK, "objectName: plain\nobjectType: secret")
	if _, err := mount(t, c, req); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.SetFaults(emulator.Faults{}) })

	em.ResetCounters()
	em.SetFaults(emulator.Faults{Throttle: 3})
	if _, err := mount(t, c, req); err != nil {
		t.Fatalf("three 429s without Retry-After, then success: %v", err)
	}
	if got := em.Counters(); got.Throttled != 3 || got.KeyVaultGets["secret"] != 1 {
		t.Errorf("counters: %d throttled, %d GETs; want 3 and 1", got.Throttled, got.KeyVaultGets["secret"])
	}

	em.SetFaults(emulator.Faults{Throttle: 100, ThrottleRetryAfter: "30"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Mount(ctx, req.build(t))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "would pass the driver's deadline") || !strings.Contains(st.Message(), "429") {
		t.Errorf("a 429 with Retry-After 30s and a 5s deadline: %v", err)
	}
	if ctx.Err() != nil {
		t.Error("the provider waited for the deadline instead of failing at once")
	}
}

// TestRateLimitHonoursDeadline: the per-vault rate limit never holds a read past the deadline.
func TestRateLimitHonoursDeadline(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{VaultRateLimit: 0.2, VaultBurst: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.Mount(ctx, spRequest(spOK, threeObjects...).build(t))
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "rate limit for this vault") {
		t.Errorf("3 reads at 0.2/s within 3s: %v", err)
	}
	if ctx.Err() != nil {
		t.Error("the provider waited for the deadline instead of failing at once")
	}
}

// TestNoGrowthAfterManyMounts: 1,000 mounts leave no goroutines or file descriptors behind.
func TestNoGrowthAfterManyMounts(t *testing.T) {
	c := startProvider(t, provider.Options{})
	req := spRequest(spOK, "objectName: plain\nobjectType: secret")
	built := req.build(t)
	for range 20 { // warm: clients, connections, token
		if _, err := c.Mount(context.Background(), built); err != nil {
			t.Fatal(err)
		}
	}
	settle := func() (int, int) {
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		fds, _ := os.ReadDir("/proc/self/fd")
		return runtime.NumGoroutine(), len(fds)
	}
	g0, fd0 := settle()
	for range 1000 {
		if _, err := c.Mount(context.Background(), built); err != nil {
			t.Fatal(err)
		}
	}
	g1, fd1 := settle()
	if g1 > g0+3 || fd1 > fd0+3 {
		t.Errorf("after 1,000 mounts: goroutines %d → %d, file descriptors %d → %d", g0, g1, fd0, fd1)
	}
}

// TestMetricsAfterMounts reads the provider's Prometheus registry after real mounts.
func TestMetricsAfterMounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	c := startProvider(t, provider.Options{Metrics: m})
	if _, err := mount(t, c, spRequest(spOK, "objectName: web-pfx\nobjectType: cert", "objectName: web-pfx\nobjectType: secret\nobjectAlias: tls.pem")); err != nil {
		t.Fatal(err)
	}
	cm := certMaterial(t, "web-pfx")
	if got := gathered(t, reg, "akv_provider_certificate_expiry_timestamp_seconds", map[string]string{"vault": vault, "object": "web-pfx"}); got != float64(cm.Leaf.NotAfter.Unix()) {
		t.Errorf("certificate expiry gauge = %v, want the leaf's notAfter %d", got, cm.Leaf.NotAfter.Unix())
	}
	want := `
# HELP akv_provider_token_requests_total HTTP requests to Entra ID or a managed identity endpoint for a token.
# TYPE akv_provider_token_requests_total counter
akv_provider_token_requests_total{identity_mode="service principal",result="success"} 1
# HELP akv_provider_object_reads_total Object reads by how they were served: miss (Key Vault), hit (result cache), shared (an identical read in flight).
# TYPE akv_provider_object_reads_total counter
akv_provider_object_reads_total{result="miss"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "akv_provider_token_requests_total", "akv_provider_object_reads_total"); err != nil {
		t.Error(err)
	}
	// Two SDK clients (certificates, secrets), each challenged once: a 401, then a 200.
	for _, class := range []string{"2xx", "4xx"} {
		for _, typ := range []string{"certificate", "secret"} {
			labels := map[string]string{"operation": "get", "object_type": typ, "status_class": class}
			if got := gathered(t, reg, "akv_provider_keyvault_requests_total", labels); got != 1 {
				t.Errorf("keyvault_requests_total%v = %v, want 1", labels, got)
			}
		}
	}
}

// gathered returns the value of the series of name with exactly labels.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}
