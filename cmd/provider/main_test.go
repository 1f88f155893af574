package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/version"
)

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"--version"}, &out); err != nil {
		t.Fatal(err)
	}
	var info version.Info
	if err := json.Unmarshal(out.Bytes(), &info); err != nil || info.Version != version.BuildVersion || info.GoVersion == "" {
		t.Errorf("--version printed %q (%v)", out.String(), err)
	}
}

func TestInvalidFlagsAreErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--endpoint", "/tmp/x.sock"},
		{"--cloud-name", "Mars"},
		{"--healthz-port", "70000"},
		{"--parallel-fetches", "0"},
		{"--result-cache-ttl", "1m"},
		{"--vault-rate-limit", "0"},
		{"--no-such-flag"},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	o, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || o.Endpoint != "unix:///tmp/azure.sock" || o.HealthzPort != 8989 || !o.ConstructPEMChain || o.CloudName != "AzurePublicCloud" {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

func TestHealthzBindFailureStopsStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	socket := filepath.Join(t.TempDir(), "azure.sock")
	err = run([]string{"--endpoint", "unix://" + socket, "--healthz-port", port, "--metrics-addr", ""}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "healthz listen") {
		t.Errorf("run with a taken healthz port: %v", err)
	}
}

func TestGracefulStopOnSIGTERM(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "azure.sock")
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--endpoint", "unix://" + socket, "--healthz-port", "0", "--metrics-addr", "127.0.0.1:0"}, &bytes.Buffer{})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop on SIGTERM")
	}
}
