// Command kv-emulator runs the Key Vault + Entra ID + managed identity
// emulator on loopback until SIGTERM or SIGINT.
//
//	kv-emulator [--seed FILE] [--listen 127.0.0.1:0] [--proxy-listen 127.0.0.1:0] [--state-dir DIR] [-v]
//
// With --state-dir it writes ca.pem, cloud.json (AzureStackCloud) and, last,
// endpoints.json ({"url","proxyURL","tenantID"}), each atomically, so
// scripts can wait for endpoints.json.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/akv-csi/provider/pkg/emulator"
)

type options struct {
	seed        string
	listen      string
	proxyListen string
	stateDir    string
	verbose     bool
}

func main() {
	if err := realMain(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kv-emulator:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("kv-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.seed, "seed", "", "seed file (YAML or JSON); default: the built-in sample vault kv-demo")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "TLS listen address (loopback only)")
	fs.StringVar(&o.proxyListen, "proxy-listen", "127.0.0.1:0", "proxy, managed identity and admin listen address (loopback only)")
	fs.StringVar(&o.stateDir, "state-dir", "", "directory for ca.pem, cloud.json and endpoints.json")
	fs.BoolVar(&o.verbose, "v", false, "log every request (method, host, path, status; never values or tokens)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

func realMain(args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return run(ctx, o, log.New(stderr, "", log.LstdFlags))
}

func run(ctx context.Context, o options, logger *log.Logger) error {
	seed := emulator.SampleSeed()
	if o.seed != "" {
		var err error
		if seed, err = emulator.LoadSeed(o.seed); err != nil {
			return err
		}
	}
	opts := emulator.Options{Seed: seed, Addr: o.listen, ProxyAddr: o.proxyListen}
	if o.verbose {
		opts.Logf = logger.Printf
	}
	e, err := emulator.Start(opts)
	if err != nil {
		return err
	}
	defer e.Close()
	if o.stateDir != "" {
		if err := os.MkdirAll(o.stateDir, 0o750); err != nil {
			return err
		}
		// endpoints.json last: its presence means everything is ready.
		if err := errors.Join(
			e.WriteCA(filepath.Join(o.stateDir, "ca.pem")),
			e.WriteCloudEnv(filepath.Join(o.stateDir, "cloud.json")),
		); err != nil {
			return err
		}
		if err := e.WriteEndpoints(filepath.Join(o.stateDir, "endpoints.json")); err != nil {
			return err
		}
	}
	logger.Printf("kv-emulator: url=%s proxyURL=%s tenantID=%s", e.URL(), e.ProxyURL(), e.TenantID())
	<-ctx.Done()
	logger.Printf("kv-emulator: shutting down")
	return e.Close()
}
