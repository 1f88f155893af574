// Package metrics defines the provider's Prometheus collectors on an injected registry. Labels are
// bounded: never a vault, object, pod, namespace or error text.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "akv_provider"

// Metrics are the provider's collectors.
type Metrics struct {
	mountDuration *prometheus.HistogramVec
}

// New registers the collectors on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		mountDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "mount_duration_seconds",
			Help:      "Duration of Mount calls by gRPC code.",
			Buckets:   []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"grpc_code"}),
	}
	reg.MustRegister(m.mountDuration)
	return m
}

// ObserveMount records one Mount call.
func (m *Metrics) ObserveMount(code string, d time.Duration) {
	m.mountDuration.WithLabelValues(code).Observe(d.Seconds())
}
