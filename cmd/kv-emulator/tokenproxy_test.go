package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
)

func TestTokenProxyFlags(t *testing.T) {
	o, err := parseFlags([]string{"--token-proxy-listen", "127.0.0.1:0", "--token-proxy-cluster-id", "c1",
		"--token-proxy-binding", "mi-1=system:serviceaccount:ns:sa", "--token-proxy-binding", "mi-2=system:serviceaccount:ns:other"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := bindingsFlag{{ClientID: "mi-1", Subject: "system:serviceaccount:ns:sa"}, {ClientID: "mi-2", Subject: "system:serviceaccount:ns:other"}}
	if o.tokenProxyListen != "127.0.0.1:0" || o.tokenProxyClusterID != "c1" || len(o.tokenProxyBindings) != 2 || o.tokenProxyBindings[1] != want[1] {
		t.Errorf("options %+v", o)
	}
	for _, bad := range []string{"mi-1", "=system:serviceaccount:ns:sa", "mi-1=ns/sa"} {
		if _, err := parseFlags([]string{"--token-proxy-binding", bad}, &bytes.Buffer{}); err == nil {
			t.Errorf("binding %q accepted", bad)
		}
	}
	if err := realMain([]string{"--token-proxy-listen", "0.0.0.0:0"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback token proxy: %v", err)
	}
}

func TestRunStartsTokenProxy(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	o := options{listen: "127.0.0.1:0", proxyListen: "127.0.0.1:0", stateDir: dir, tokenProxyListen: "127.0.0.1:0",
		tokenProxyClusterID: emulator.DefaultClusterID, tokenProxyBindings: bindingsFlag{{ClientID: "mi", Subject: "system:serviceaccount:a:b"}}}
	go func() { done <- run(ctx, o, log.New(&logs, "", 0)) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "endpoints.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("endpoints.json not written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var tp map[string]string
	b, _ := os.ReadFile(filepath.Join(dir, "tokenproxy.json"))
	if err := json.Unmarshal(b, &tp); err != nil || !strings.HasPrefix(tp["url"], "https://127.0.0.1:") ||
		tp["serverName"] != emulator.TokenProxyServerName(emulator.DefaultClusterID) || tp["clusterID"] != emulator.DefaultClusterID {
		t.Fatalf("tokenproxy.json: %v %s", err, b)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(tp["url"], "https://"), &tls.Config{RootCAs: pool, ServerName: tp["serverName"]})
	if err != nil {
		t.Fatalf("TLS to the token proxy with its server name: %v", err)
	}
	_ = conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "tokenProxyURL="+tp["url"]) {
		t.Errorf("log %q lacks the token proxy URL", logs.String())
	}
}
