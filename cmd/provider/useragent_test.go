package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

func TestUserAgentPolicyAppendsOnce(t *testing.T) {
	t.Parallel()
	got := make(chan string, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.UserAgent()
		w.WriteHeader(http.StatusServiceUnavailable) // retried by the pipeline
	}))
	t.Cleanup(srv.Close)
	pl := runtime.NewPipeline("test", "v1", runtime.PipelineOptions{}, &policy.ClientOptions{
		Telemetry:       policy.TelemetryOptions{ApplicationID: "akv-csi-provider"},
		PerCallPolicies: []policy.Policy{userAgentPolicy{suffix: "team-a/1.0 (aks)"}},
		Retry:           policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond},
	})
	req, err := runtime.NewRequest(context.Background(), http.MethodGet, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for range 2 { // the request and its retry
		ua := <-got
		if !strings.HasPrefix(ua, "akv-csi-provider azsdk-go-test/v1") || !strings.HasSuffix(ua, ") team-a/1.0 (aks)") || strings.Count(ua, "team-a") != 1 {
			t.Errorf("User-Agent %q: want the SDK's, then the custom one once", ua)
		}
	}
}

func TestPprofListensOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	port, err := strconv.Atoi(freePort(t, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, l, err := pprofServer(port)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if srv.Handler == nil || srv.Handler == http.DefaultServeMux {
		t.Error("pprof is served from http.DefaultServeMux")
	}
	if addr := l.Addr().(*net.TCPAddr); !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) || addr.Port != port {
		t.Errorf("pprof listens on %s, want 127.0.0.1:%d", addr, port)
	}
}
