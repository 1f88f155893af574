// Package metrics defines the provider's Prometheus collectors on an injected registry. Labels are
// bounded: never error text, a pod or a namespace. Two name objects: the certificate expiry gauge,
// labelled by vault and object, which is bounded by what is mounted and forgets series that are
// not refreshed; and Azure's keyvault_request, whose object_name keeps the first MaxObjectNames
// names. Beside its own akv_provider_* metrics, it exports the two histograms of Azure's
// provider, keyvault_request and grpc_request, with bounded labels (upstream.go).
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "akv_provider"

// Recorder receives what the provider measures. Nop discards it.
type Recorder interface {
	ObserveMount(grpcCode string, d time.Duration)
	// ObserveKeyVaultRequest records one HTTP request to Key Vault (operation get or list, object
	// type secret, key or certificate, status class 2xx/4xx/5xx or "error" without a response).
	ObserveKeyVaultRequest(operation, objectType, statusClass string, d time.Duration)
	// ObserveTokenRequest records one HTTP request to Entra ID or a managed identity endpoint.
	ObserveTokenRequest(identityMode, result string)
	// ObserveRead records how a read was served: "miss" (Key Vault), "hit" (result cache) or
	// "shared" (joined an identical read in flight).
	ObserveRead(result string)
	ObserveThrottled()
	ObserveRetry()
	SetCertificateExpiry(vault, object string, notAfter time.Time)
	// ObserveObjectRequest records one read of an object from Key Vault, as Azure's provider
	// records it in keyvault_request: a version's GET or a versions listing, from its first
	// request to its result (retries included). objectType is secret, key or cert; errorClass is
	// "" on success, else one of ErrorClasses, never error text. objectName is kept for the first
	// MaxObjectNames names of the process, OtherObjectName after.
	ObserveObjectRequest(objectType, objectName, errorClass string, d time.Duration)
	// ObserveGRPCRequest records one unary call of the provider's gRPC server in grpc_request:
	// its full method and its gRPC code name ("OK", "NotFound"...). The message label is derived
	// from the code, never taken from the status.
	ObserveGRPCRequest(method, code string, d time.Duration)
}

// Nop is a Recorder that records nothing.
type Nop struct{}

// ObserveMount does nothing.
func (Nop) ObserveMount(string, time.Duration) {}

// ObserveKeyVaultRequest does nothing.
func (Nop) ObserveKeyVaultRequest(string, string, string, time.Duration) {}

// ObserveTokenRequest does nothing.
func (Nop) ObserveTokenRequest(string, string) {}

// ObserveRead does nothing.
func (Nop) ObserveRead(string) {}

// ObserveThrottled does nothing.
func (Nop) ObserveThrottled() {}

// ObserveRetry does nothing.
func (Nop) ObserveRetry() {}

// SetCertificateExpiry does nothing.
func (Nop) SetCertificateExpiry(string, string, time.Time) {}

// ObserveObjectRequest does nothing.
func (Nop) ObserveObjectRequest(string, string, string, time.Duration) {}

// ObserveGRPCRequest does nothing.
func (Nop) ObserveGRPCRequest(string, string, time.Duration) {}

// Metrics is the Prometheus Recorder.
type Metrics struct {
	mountDuration      *prometheus.HistogramVec
	kvRequests         *prometheus.CounterVec
	kvDuration         *prometheus.HistogramVec
	tokenRequests      *prometheus.CounterVec
	reads              *prometheus.CounterVec
	throttled, retries prometheus.Counter
	certExpiry         *prometheus.GaugeVec
	upstream           *upstream

	mu       sync.Mutex
	certSeen map[[2]string]time.Time
	// CertTTL forgets a certificate expiry series not refreshed for this long (default 6h; the
	// driver's rotation refreshes mounted ones every few minutes).
	CertTTL time.Duration
	now     func() time.Time
}

var buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// New registers the collectors on reg: the akv_provider_* metrics and Azure's keyvault_request
// and grpc_request.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		mountDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "mount_duration_seconds", Help: "Duration of Mount calls by gRPC code.", Buckets: buckets,
		}, []string{"grpc_code"}),
		kvRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "keyvault_requests_total", Help: "HTTP requests to Key Vault.",
		}, []string{"operation", "object_type", "status_class"}),
		kvDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "keyvault_request_duration_seconds", Help: "Duration of HTTP requests to Key Vault.", Buckets: buckets,
		}, []string{"operation", "object_type"}),
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_requests_total", Help: "HTTP requests to Entra ID or a managed identity endpoint for a token.",
		}, []string{"identity_mode", "result"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "object_reads_total",
			Help: "Object reads by how they were served: miss (Key Vault), hit (result cache), shared (an identical read in flight).",
		}, []string{"result"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "keyvault_throttled_total", Help: "429 responses from Key Vault.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "keyvault_retries_total", Help: "Reads retried after a 429.",
		}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "certificate_expiry_timestamp_seconds",
			Help: "notAfter of each mounted certificate, in seconds since the epoch.",
		}, []string{"vault", "object"}),
		upstream: newUpstream(),
		certSeen: map[[2]string]time.Time{},
		CertTTL:  6 * time.Hour,
		now:      time.Now,
	}
	reg.MustRegister(m.mountDuration, m.kvRequests, m.kvDuration, m.tokenRequests, m.reads, m.throttled, m.retries, m.certExpiry,
		m.upstream.keyvaultRequest, m.upstream.grpcRequest)
	return m
}

// ObserveMount records one Mount call.
func (m *Metrics) ObserveMount(code string, d time.Duration) {
	m.mountDuration.WithLabelValues(code).Observe(d.Seconds())
}

// ObserveKeyVaultRequest records one Key Vault HTTP request.
func (m *Metrics) ObserveKeyVaultRequest(operation, objectType, statusClass string, d time.Duration) {
	m.kvRequests.WithLabelValues(operation, objectType, statusClass).Inc()
	m.kvDuration.WithLabelValues(operation, objectType).Observe(d.Seconds())
}

// ObserveTokenRequest records one token request.
func (m *Metrics) ObserveTokenRequest(identityMode, result string) {
	m.tokenRequests.WithLabelValues(identityMode, result).Inc()
}

// ObserveRead records how an object read was served.
func (m *Metrics) ObserveRead(result string) { m.reads.WithLabelValues(result).Inc() }

// ObserveThrottled records a 429.
func (m *Metrics) ObserveThrottled() { m.throttled.Inc() }

// ObserveRetry records a retry after a 429.
func (m *Metrics) ObserveRetry() { m.retries.Inc() }

// SetCertificateExpiry records a mounted certificate's notAfter, and forgets series not
// refreshed within CertTTL so the gauge stays bounded by what is mounted.
func (m *Metrics) SetCertificateExpiry(vault, object string, notAfter time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.certSeen[[2]string{vault, object}] = now
	m.certExpiry.WithLabelValues(vault, object).Set(float64(notAfter.Unix()))
	for k, seen := range m.certSeen {
		if now.Sub(seen) > m.CertTTL {
			delete(m.certSeen, k)
			m.certExpiry.DeleteLabelValues(k[0], k[1])
		}
	}
}

// ObserveObjectRequest records one object read from Key Vault in keyvault_request, with bounded labels.
func (m *Metrics) ObserveObjectRequest(objectType, objectName, errorClass string, d time.Duration) {
	m.upstream.observeObjectRequest(objectType, objectName, errorClass, d)
}

// ObserveGRPCRequest records one unary gRPC call in grpc_request, with bounded labels.
func (m *Metrics) ObserveGRPCRequest(method, code string, d time.Duration) {
	m.upstream.observeGRPCRequest(method, code, d)
}

// StatusClass names an HTTP status by its class ("2xx"), or "error" when there was no response.
func StatusClass(status int) string {
	if status < 100 || status > 599 {
		return "error"
	}
	return string(rune('0'+status/100)) + "xx"
}
