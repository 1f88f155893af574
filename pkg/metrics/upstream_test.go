package metrics

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestUpstreamExposition makes the observations that produced testdata/upstream-v1.8.2-metrics.txt
// with Azure's own code, and compares the exposition with that file: only target_info (not
// copied) and the label values bounded here (error text, gRPC message) differ.
func TestUpstreamExposition(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/upstream-v1.8.2-metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := strings.Cut(string(b), "# HELP target_info")
	want = strings.NewReplacer(
		`error="some error"`, `error="not_found"`, // the raw error text there; a class here
		`object_name="tls"`, `object_name="`+OtherObjectName+`"`, // a name no read has served yet
		`grpc_message="failed"`, `grpc_message="unknown"`, // the raw status message there
		`os_type="linux"`, `os_type="`+runtime.GOOS+`"`,
	).Replace(want)

	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ObserveObjectRequest("secret", "db-password", "", 200*time.Millisecond)
	m.ObserveObjectRequest("cert", "tls", ErrorNotFound, 300*time.Millisecond)
	m.ObserveGRPCRequest("/v1alpha1.CSIDriverProvider/Mount", "OK", 500*time.Millisecond)
	m.ObserveGRPCRequest("/v1alpha1.CSIDriverProvider/Mount", "Unknown", 500*time.Millisecond)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keyvault_request", "grpc_request"); err != nil {
		t.Error(err)
	}
}

// series lists the label sets of name's series, one "k=v,k=v" string each, without the
// constant labels.
func series(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	constant := upstreamLabels()
	var out []string
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				if _, ok := constant[l.GetName()]; !ok {
					pairs = append(pairs, l.GetName()+"="+l.GetValue())
				}
			}
			out = append(out, strings.Join(pairs, ","))
		}
	}
	return out
}

func TestObjectRequestLabelsAreBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	// Made-up names (never read successfully) take no place, before the cap as after it.
	for i := range 1000 {
		m.ObserveObjectRequest("secret", fmt.Sprintf("made-up-%d", i), ErrorNotFound, time.Millisecond)
	}
	for i := range MaxObjectNames {
		m.ObserveObjectRequest("secret", fmt.Sprintf("name-%03d", i), "", time.Millisecond)
	}
	if n := len(series(t, reg, "keyvault_request")); n != MaxObjectNames+1 {
		t.Fatalf("%d series after %d names, want %d (and %s)", n, MaxObjectNames, MaxObjectNames, OtherObjectName)
	}
	// Past the cap: new names share one value; admitted names keep theirs, failures included.
	for i := range 1000 {
		m.ObserveObjectRequest("secret", fmt.Sprintf("real-%d", i), "", time.Millisecond)
	}
	m.ObserveObjectRequest("secret", "name-007", ErrorNotFound, time.Millisecond)
	got := series(t, reg, "keyvault_request")
	if n := len(got); n != MaxObjectNames+3 {
		t.Errorf("%d series, want %d (the admitted names, %q failed and served, and name-007's failure)", n, MaxObjectNames+3, OtherObjectName)
	}
	for _, want := range []string{"error=not_found,object_name=" + OtherObjectName + ",object_type=secret", "error=,object_name=" + OtherObjectName + ",object_type=secret",
		"error=not_found,object_name=name-007,object_type=secret"} {
		if !contains(got, want) {
			t.Errorf("no series %s among %d", want, len(got))
		}
	}
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ typ, class, wantType, wantError string }{
		{"secret", "", "secret", ""},
		{"key", ErrorThrottled, "key", "throttled"},
		{"cert", ErrorPermissionDenied, "cert", "permission_denied"},
		// Error text never becomes a label value, whatever a caller passes.
		{"secret", "get secret \"db\": 403 Forbidden: value=hunter2", "secret", "internal"},
		{"certificate", ErrorNotFound, "other", "not_found"},
	} {
		reg := prometheus.NewRegistry()
		m := New(reg)
		m.ObserveObjectRequest("secret", "db", "", time.Millisecond) // admits db
		m.ObserveObjectRequest(tt.typ, "db", tt.class, time.Millisecond)
		want := []string{"error=" + tt.wantError + ",object_name=db,object_type=" + tt.wantType}
		if tt.wantType != "secret" || tt.wantError != "" {
			want = append([]string{"error=,object_name=db,object_type=secret"}, want...)
		}
		if diff := cmp.Diff(want, series(t, reg, "keyvault_request")); diff != "" {
			t.Errorf("ObserveObjectRequest(%q, %q): (-want +got)\n%s", tt.typ, tt.class, diff)
		}
	}
	seen := map[string]bool{}
	for _, c := range ErrorClasses {
		if c == "" || seen[c] || strings.ContainsAny(c, " :\"") {
			t.Errorf("error class %q: empty, repeated or not a word", c)
		}
		seen[c] = true
	}
}

func TestGRPCRequestLabelsAreBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ObserveGRPCRequest("/v1alpha1.CSIDriverProvider/Mount", "OK", time.Millisecond)
	m.ObserveGRPCRequest("/v1alpha1.CSIDriverProvider/Mount", "NotFound", time.Millisecond)
	m.ObserveGRPCRequest("/v1alpha1.CSIDriverProvider/Mount", "Code(99)", time.Millisecond)
	for i := range 100 {
		m.ObserveGRPCRequest(fmt.Sprintf("/made.Up/M%d", i), "Unimplemented", time.Millisecond)
	}
	got := series(t, reg, "grpc_request")
	want := []string{
		"grpc_code=OK,grpc_message=,grpc_method=/v1alpha1.CSIDriverProvider/Mount",
		"grpc_code=NotFound,grpc_message=not_found,grpc_method=/v1alpha1.CSIDriverProvider/Mount",
		"grpc_code=Unknown,grpc_message=unknown,grpc_method=/v1alpha1.CSIDriverProvider/Mount",
		"grpc_code=Unimplemented,grpc_message=unimplemented,grpc_method=" + OtherGRPCMethod,
	}
	for _, w := range want {
		if !contains(got, w) {
			t.Errorf("no series %s", w)
		}
	}
	if n := len(got); n != 3+MaxGRPCMethods {
		t.Errorf("%d series, want %d (Mount's three, %d methods, then %q)", n, 3+MaxGRPCMethods, MaxGRPCMethods-1, OtherGRPCMethod)
	}
	if len(grpcMessages) != 17 {
		t.Errorf("%d gRPC codes have a message, want all 17", len(grpcMessages))
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
