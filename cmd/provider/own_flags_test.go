package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOwnFlagsAreApplied starts the binary with this provider's own process flags and checks
// their effect, not only their parsing: --max-procs sets GOMAXPROCS (the Go collector's
// go_sched_gomaxprocs_threads), GOMEMLIMIT from the environment reaches the runtime
// (go_gc_gomemlimit_bytes), and --healthz-bind-address / --metrics-bind-address keep /healthz and
// /metrics on loopback.
func TestOwnFlagsAreApplied(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: it builds the provider binary (about 10 s); make test runs it")
	}
	dir := t.TempDir()
	bin := buildProvider(t, dir)
	socket := filepath.Join(dir, "azure.sock")
	healthzPort, promPort := freePort(t, ""), freePort(t, "")
	startProvider(t, bin, filepath.Join(dir, "provider.log"), []string{"GOMAXPROCS=", "GOMEMLIMIT=150MiB"}, []string{
		"--endpoint=unix://" + socket, "--max-procs=3",
		"--healthz-port=" + healthzPort, "--healthz-bind-address=127.0.0.1",
		"--prometheus-port=" + promPort, "--metrics-bind-address=127.0.0.1",
	})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	waitFor(t, "the provider's socket", func() error { _, err := os.Stat(socket); return err })
	waitFor(t, "/healthz on 127.0.0.1", func() error { return httpOK(hc, "http://127.0.0.1:"+healthzPort+"/healthz", "ok") })
	for _, want := range []string{"\ngo_sched_gomaxprocs_threads 3\n", "\ngo_gc_gomemlimit_bytes 1.572864e+08\n"} {
		if err := httpOK(hc, "http://127.0.0.1:"+promPort+"/metrics", want); err != nil {
			t.Errorf("%v", err)
		}
	}
	ip := nonLoopbackIP()
	if ip == nil {
		t.Log("this host has no non-loopback address: the bind addresses are checked on loopback only")
		return
	}
	for _, port := range []string{healthzPort, promPort} {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), port), 2*time.Second); err == nil {
			_ = c.Close()
			t.Errorf("port %s answers on %s, a non-loopback address, with a loopback bind address", port, ip)
		}
	}
}
