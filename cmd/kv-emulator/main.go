// Command kv-emulator runs the Key Vault + Entra ID + managed identity
// emulator on loopback until SIGTERM or SIGINT.
//
//	kv-emulator [--seed FILE] [--listen 127.0.0.1:0] [--proxy-listen 127.0.0.1:0] [--state-dir DIR] [-v]
//	            [--token-proxy-listen 127.0.0.1:0 [--token-proxy-cluster-id ID] [--token-proxy-server-name NAME]
//	             [--token-proxy-binding CLIENT_ID=system:serviceaccount:NS:SA ...]]
//
// With --state-dir it writes ca.pem, cloud.json (AzureStackCloud), tokenproxy.json
// ({"url","serverName","clusterID"}, with --token-proxy-listen) and, last,
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
	"strings"
	"syscall"

	"github.com/akv-csi/provider/pkg/emulator"
)

type options struct {
	seed        string
	listen      string
	proxyListen string
	stateDir    string
	verbose     bool

	tokenProxyListen     string
	tokenProxyClusterID  string
	tokenProxyServerName string
	tokenProxyBindings   bindingsFlag
}

// bindingsFlag collects --token-proxy-binding CLIENT_ID=SUBJECT.
type bindingsFlag []emulator.IdentityBinding

func (b *bindingsFlag) String() string { return fmt.Sprint(*b) }

func (b *bindingsFlag) Set(v string) error {
	id, sub, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(id) == "" || !strings.HasPrefix(sub, "system:serviceaccount:") {
		return fmt.Errorf("%q is not CLIENT_ID=system:serviceaccount:NAMESPACE:NAME", v)
	}
	*b = append(*b, emulator.IdentityBinding{ClientID: strings.TrimSpace(id), Subject: sub})
	return nil
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
	fs.StringVar(&o.tokenProxyListen, "token-proxy-listen", "", "AKS token proxy (identity binding) TLS listen address (loopback only); empty: none")
	fs.StringVar(&o.tokenProxyClusterID, "token-proxy-cluster-id", emulator.DefaultClusterID, "cluster ID in the token proxy's API server certificate")
	fs.StringVar(&o.tokenProxyServerName, "token-proxy-server-name", "", "TLS server name of the token proxy; empty: computed from the cluster ID")
	fs.Var(&o.tokenProxyBindings, "token-proxy-binding", "CLIENT_ID=system:serviceaccount:NAMESPACE:NAME: let a service account use a user-assigned identity (repeatable)")
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
	var tp *emulator.TokenProxy
	if o.tokenProxyListen != "" {
		if tp, err = e.StartTokenProxy(emulator.TokenProxyOptions{Addr: o.tokenProxyListen, ClusterID: o.tokenProxyClusterID,
			ServerName: o.tokenProxyServerName, Bindings: o.tokenProxyBindings}); err != nil {
			return err
		}
		defer func() { _ = tp.Close() }()
	}
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
		if tp != nil {
			if err := tp.WriteState(filepath.Join(o.stateDir, "tokenproxy.json")); err != nil {
				return err
			}
		}
		if err := e.WriteEndpoints(filepath.Join(o.stateDir, "endpoints.json")); err != nil {
			return err
		}
	}
	logger.Printf("kv-emulator: url=%s proxyURL=%s tenantID=%s", e.URL(), e.ProxyURL(), e.TenantID())
	if tp != nil {
		logger.Printf("kv-emulator: tokenProxyURL=%s tokenProxyServerName=%s", tp.URL(), tp.ServerName())
	}
	<-ctx.Done()
	logger.Printf("kv-emulator: shutting down")
	return e.Close()
}
