package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestExposition(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	now := time.Unix(1_700_000_000, 0)
	m.now = func() time.Time { return now }

	m.ObserveKeyVaultRequest("get", "secret", StatusClass(200), 20*time.Millisecond)
	m.ObserveKeyVaultRequest("get", "secret", StatusClass(401), 5*time.Millisecond)
	m.ObserveKeyVaultRequest("list", "key", StatusClass(0), time.Millisecond)
	m.ObserveTokenRequest("workload identity", "success")
	m.ObserveRead("miss")
	m.ObserveRead("hit")
	m.ObserveRead("hit")
	m.ObserveThrottled()
	m.ObserveRetry()
	m.SetCertificateExpiry("kv", "old", time.Unix(100, 0))
	now = now.Add(7 * time.Hour) // "old" is no longer mounted anywhere
	m.SetCertificateExpiry("kv", "web", time.Unix(1_800_000_000, 0))

	want := `
# HELP akv_provider_certificate_expiry_timestamp_seconds notAfter of each mounted certificate, in seconds since the epoch.
# TYPE akv_provider_certificate_expiry_timestamp_seconds gauge
akv_provider_certificate_expiry_timestamp_seconds{object="web",vault="kv"} 1.8e+09
# HELP akv_provider_keyvault_requests_total HTTP requests to Key Vault.
# TYPE akv_provider_keyvault_requests_total counter
akv_provider_keyvault_requests_total{object_type="key",operation="list",status_class="error"} 1
akv_provider_keyvault_requests_total{object_type="secret",operation="get",status_class="2xx"} 1
akv_provider_keyvault_requests_total{object_type="secret",operation="get",status_class="4xx"} 1
# HELP akv_provider_keyvault_retries_total Reads retried after a 429.
# TYPE akv_provider_keyvault_retries_total counter
akv_provider_keyvault_retries_total 1
# HELP akv_provider_keyvault_throttled_total 429 responses from Key Vault.
# TYPE akv_provider_keyvault_throttled_total counter
akv_provider_keyvault_throttled_total 1
# HELP akv_provider_object_reads_total Object reads by how they were served: miss (Key Vault), hit (result cache), shared (an identical read in flight).
# TYPE akv_provider_object_reads_total counter
akv_provider_object_reads_total{result="hit"} 2
akv_provider_object_reads_total{result="miss"} 1
# HELP akv_provider_token_requests_total HTTP requests to Entra ID or a managed identity endpoint for a token.
# TYPE akv_provider_token_requests_total counter
akv_provider_token_requests_total{identity_mode="workload identity",result="success"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"akv_provider_certificate_expiry_timestamp_seconds", "akv_provider_keyvault_requests_total", "akv_provider_keyvault_retries_total",
		"akv_provider_keyvault_throttled_total", "akv_provider_object_reads_total", "akv_provider_token_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.mountDuration); n != 0 {
		t.Errorf("mount histogram has %d series before any mount", n)
	}
	m.ObserveMount("OK", time.Second)
	if n := testutil.CollectAndCount(m.mountDuration); n != 1 {
		t.Errorf("mount histogram has %d series, want 1", n)
	}
}

func TestStatusClass(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]string{0: "error", 200: "2xx", 404: "4xx", 429: "4xx", 503: "5xx", 999: "error"} {
		if got := StatusClass(status); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", status, got, want)
		}
	}
}
