package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// upstreamExposition is what Azure's provider v1.8.2 exports, produced by its own pkg/metrics
// (see the file's header).
const upstreamExposition = "../../pkg/metrics/testdata/upstream-v1.8.2-metrics.txt"

// ourFamilies are the provider's own metrics, which stay beside Azure's.
var ourFamilies = []string{
	"akv_provider_mount_duration_seconds",
	"akv_provider_keyvault_requests_total",
	"akv_provider_keyvault_request_duration_seconds",
	"akv_provider_token_requests_total",
	"akv_provider_object_reads_total",
	"akv_provider_keyvault_throttled_total",
	"akv_provider_keyvault_retries_total",
	"akv_provider_certificate_expiry_timestamp_seconds",
}

func parseExposition(t *testing.T, what string, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse %s: %v", what, err)
	}
	return families
}

// labelKeys lists the label names of every series of f, each set sorted and joined by commas.
func labelKeys(f *dto.MetricFamily) []string {
	var sets []string
	for _, m := range f.GetMetric() {
		var names []string
		for _, l := range m.GetLabel() {
			names = append(names, l.GetName())
		}
		sort.Strings(names)
		if set := strings.Join(names, ","); !slices.Contains(sets, set) {
			sets = append(sets, set)
		}
	}
	return sets
}

// labelValues are the values of label name among f's series.
func labelValues(f *dto.MetricFamily, name string) []string {
	var out []string
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name && !slices.Contains(out, l.GetValue()) {
				out = append(out, l.GetValue())
			}
		}
	}
	sort.Strings(out)
	return out
}

// scrape fetches and parses the binary's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/metrics"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	return parseExposition(t, "/metrics", resp.Body)
}

// TestUpstreamMetricsAgainstTheBinary mounts through the provider binary (a success with a
// secret and a certificate, and a failure on a missing object), scrapes /metrics and checks that
// every metric family of Azure's provider v1.8.2 (but target_info, not copied) is exported with
// the same type, help and label keys, with bounded values, and that the provider's own
// akv_provider_* families are still there.
func TestUpstreamMetricsAgainstTheBinary(t *testing.T) {
	port := freeLoopbackPort(t)
	b := startBinaryEnv(t, nil, "--prometheus-port="+port, "--metrics-bind-address=127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.client.Version(ctx, &v1alpha1.VersionRequest{Version: "v1alpha1"}); err != nil {
		t.Fatal(err)
	}
	mustMount(t, b.client, spRequest(spOK, plainSecret, "objectName: web-pfx\nobjectType: cert"))
	if _, err := mount(t, b.client, spRequest(spOK, "objectName: no-such-object\nobjectType: secret")); status.Code(err) != codes.NotFound {
		t.Fatalf("mount of a missing object: %v, want NotFound", err)
	}

	f, err := os.Open(upstreamExposition)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	upstream := parseExposition(t, upstreamExposition, f)
	got := scrape(t, "127.0.0.1:"+port)

	if _, ok := got["target_info"]; ok {
		t.Error("target_info is exported: it claims an OpenTelemetry SDK the provider does not run")
	}
	delete(upstream, "target_info")
	if len(upstream) != 2 {
		t.Errorf("the upstream exposition has %d families besides target_info, want 2 (keyvault_request, grpc_request)", len(upstream))
	}
	for name, want := range upstream {
		have, ok := got[name]
		if !ok {
			t.Errorf("%s: not exported", name)
			continue
		}
		if have.GetType() != want.GetType() || have.GetHelp() != want.GetHelp() {
			t.Errorf("%s: %s %q, want %s %q as Azure's provider", name, have.GetType(), have.GetHelp(), want.GetType(), want.GetHelp())
		}
		if w, h := labelKeys(want), labelKeys(have); len(w) != 1 || !slices.Equal(w, h) {
			t.Errorf("%s: label keys %q, want %q as Azure's provider", name, h, w)
		}
		if len(have.GetMetric()) > 0 && len(want.GetMetric()) > 0 {
			var wb, hb []float64
			for _, b := range want.GetMetric()[0].GetHistogram().GetBucket() {
				wb = append(wb, b.GetUpperBound())
			}
			for _, b := range have.GetMetric()[0].GetHistogram().GetBucket() {
				hb = append(hb, b.GetUpperBound())
			}
			if !slices.Equal(wb, hb) {
				t.Errorf("%s: buckets %v, want %v", name, hb, wb)
			}
		}
	}
	for _, name := range ourFamilies {
		if _, ok := got[name]; !ok {
			t.Errorf("%s: no longer exported", name)
		}
	}

	// What the mounts recorded, with bounded values: a class, never error or status text.
	if kv := got["keyvault_request"]; kv != nil {
		for label, want := range map[string][]string{
			"object_name": {"_other", "plain", "web-pfx"}, // no-such-object was never served, so it has no name of its own
			"object_type": {"cert", "secret"},
			"error":       {"", "not_found"},
		} {
			if have := labelValues(kv, label); !slices.Equal(have, want) {
				t.Errorf("keyvault_request %s values %q, want %q", label, have, want)
			}
		}
	}
	if g := got["grpc_request"]; g != nil {
		for label, want := range map[string][]string{
			"grpc_method":  {"/v1alpha1.CSIDriverProvider/Mount", "/v1alpha1.CSIDriverProvider/Version"},
			"grpc_code":    {"NotFound", "OK"},
			"grpc_message": {"", "not_found"},
		} {
			if have := labelValues(g, label); !slices.Equal(have, want) {
				t.Errorf("grpc_request %s values %q, want %q", label, have, want)
			}
		}
	}
}
