//go:build e2e

package framework

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
)

// StartEmulator starts the Key Vault / Entra ID emulator in-process, on loopback, logging to
// <logDir>/kv-emulator.log. It is closed in t.Cleanup. CAFile is its CA for SSL_CERT_FILE.
func StartEmulator(t testing.TB, seed *emulator.Seed, logDir string) (*emulator.Emulator, string) {
	t.Helper()
	logPath := filepath.Join(logDir, "kv-emulator.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	lg := log.New(f, "", log.LstdFlags|log.Lmicroseconds)
	registerLog(t, "kv-emulator", logPath)
	e, err := emulator.Start(emulator.Options{Seed: seed, Logf: lg.Printf})
	if err != nil {
		_ = f.Close()
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close emulator: %v", err)
		}
		_ = f.Close()
	})
	ca := filepath.Join(logDir, "..", "emulator-ca.pem")
	if err := e.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	return e, ca
}

// Provider is our provider binary serving <ProvidersDir>/azure.sock.
type Provider struct {
	Socket     string
	HealthURL  string
	MetricsURL string
	Process    *Process
	in         ProviderInput
	t          testing.TB
	args       []string
	env        []string
}

// ProviderInput configures StartProvider.
type ProviderInput struct {
	Config       Config
	ProvidersDir string
	ProxyURL     string // emulator proxy: HTTPS_PROXY and HTTP_PROXY
	CAFile       string // emulator CA: SSL_CERT_FILE
	LogDir       string
	ExtraArgs    []string
}

// StartProvider starts _output/bin/provider as the chart would, redirected to the emulator
// through HTTPS_PROXY/HTTP_PROXY and SSL_CERT_FILE only, and waits for its socket and /healthz.
func StartProvider(t testing.TB, in ProviderInput) *Provider {
	t.Helper()
	Require(t, in.Config.Provider)
	healthPort, metricsPort := FreePort(t), FreePort(t)
	p := &Provider{
		Socket:     filepath.Join(in.ProvidersDir, "azure.sock"),
		HealthURL:  "http://127.0.0.1:" + strconv.Itoa(healthPort) + "/healthz",
		MetricsURL: "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics",
		in:         in, t: t,
	}
	p.args = append([]string{
		"--endpoint=unix://" + p.Socket,
		"--healthz-port=" + strconv.Itoa(healthPort),
		"--prometheus-port=" + strconv.Itoa(metricsPort),
	}, in.ExtraArgs...)
	p.env = []string{
		"HTTPS_PROXY=" + in.ProxyURL, "HTTP_PROXY=" + in.ProxyURL, "NO_PROXY=127.0.0.1,localhost",
		"SSL_CERT_FILE=" + in.CAFile,
	}
	p.start()
	return p
}

func (p *Provider) start() {
	p.t.Helper()
	start := time.Now()
	p.Process = StartProcess(p.t, ProcessInput{Name: "provider", Path: p.in.Config.Provider, LogDir: p.in.LogDir, Args: p.args, Env: p.env})
	if err := WaitFor(context.Background(), 30*time.Second, "provider socket and /healthz", func(ctx context.Context) (bool, error) {
		if ok, err := processAlive(p.Process); !ok {
			return false, err
		}
		if _, err := os.Stat(p.Socket); err != nil {
			return false, fmt.Errorf("socket: %w", err)
		}
		return httpOK(ctx, http.DefaultClient, p.HealthURL)
	}); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("provider ready in %s (pid %d)", time.Since(start).Round(time.Millisecond), p.Process.Pid())
}

// Restart stops the provider (SIGTERM, or SIGKILL if crash is true) and starts it again with
// the same flags and socket.
func (p *Provider) Restart(crash bool) {
	p.t.Helper()
	if crash {
		p.Process.Kill()
	} else {
		p.Process.Stop()
	}
	p.start()
}

// StartFakeProvider serves the driver's own fake provider on <providersDir>/fake.sock (SPC
// provider "fake"); it checks the harness without our code.
func StartFakeProvider(t testing.TB, cfg Config, providersDir, logDir string) *Process {
	t.Helper()
	Require(t, cfg.FakeProvider)
	sock := filepath.Join(providersDir, "fake.sock")
	p := StartProcess(t, ProcessInput{Name: "fakeprovider", Path: cfg.FakeProvider, LogDir: logDir, Args: []string{"--socket=" + sock}})
	if err := WaitFor(context.Background(), 30*time.Second, "fake provider socket", func(context.Context) (bool, error) {
		if ok, err := processAlive(p); !ok {
			return false, err
		}
		_, err := os.Stat(sock)
		return err == nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	return p
}
