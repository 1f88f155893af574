package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunWritesStateAndStops(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- run(ctx, options{listen: "127.0.0.1:0", proxyListen: "127.0.0.1:0", stateDir: dir}, log.New(&logs, "", 0))
	}()
	var ep map[string]string
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "endpoints.json"))
		if err == nil && json.Unmarshal(b, &ep) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("endpoints.json not written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(ep["url"], "https://127.0.0.1:") || !strings.HasPrefix(ep["proxyURL"], "http://127.0.0.1:") || ep["tenantID"] == "" {
		t.Errorf("endpoints %v", ep)
	}
	var cloud map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "cloud.json"))
	if err := json.Unmarshal(b, &cloud); err != nil || cloud["activeDirectoryEndpoint"] != ep["url"]+"/" || cloud["name"] != "AzureStackCloud" {
		t.Errorf("cloud.json: %v %s", err, b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Contains(b, []byte("BEGIN CERTIFICATE")) {
		t.Error("ca.pem missing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags([]string{"--nope"}, &bytes.Buffer{}); err == nil {
		t.Error("unknown flag accepted")
	}
	if err := realMain([]string{"--listen", "0.0.0.0:0"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback listen: %v", err)
	}
	if err := realMain([]string{"--seed", filepath.Join(t.TempDir(), "missing.yaml")}, &bytes.Buffer{}); err == nil {
		t.Error("missing seed accepted")
	}
}
