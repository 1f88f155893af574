package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string
		stderr string
	}{
		{name: "help", args: []string{"-h"}, code: 0, stderr: "akv-check -f spc.yaml"},
		{name: "version", args: []string{"--version"}, code: 0, stdout: `"gitCommit"`},
		{name: "nothing to check", args: nil, code: 2, stderr: "no SecretProviderClass to check: give -f FILE (or --kube)"},
		{name: "unknown output", args: []string{"-o", "yaml", "x.yaml"}, code: 2, stderr: `-o "yaml": use text or json`},
		{name: "unknown flag", args: []string{"--liev"}, code: 2, stderr: "flag provided but not defined: -liev"},
		{name: "token file without workload identity", args: []string{"--live", "--token-file", "t", "-f", "x.yaml"}, code: 2,
			stderr: "--token-file and --client-id go with --as-workload-identity"},
		{name: "workload identity without a token", args: []string{"--live", "--as-workload-identity", "-f", "x.yaml"}, code: 2,
			stderr: "--as-workload-identity needs --token-file"},
		{name: "live flags without live", args: []string{"--write-dir", "/tmp/x", "--tenant-id", "t", "-f", "x.yaml"}, code: 2,
			stderr: "--tenant-id goes with --live\n--write-dir goes with --live"},
		{name: "no token file", args: []string{"--live", "--as-workload-identity", "--token-file", "no-such-token", "x.yaml"}, code: 2,
			stderr: "cannot read --token-file no-such-token: no such file or directory"},
		{name: "not a token", args: []string{"--live", "--as-workload-identity", "--token-file", "main.go", "x.yaml"}, code: 2,
			stderr: "--token-file main.go does not hold a service account token (a JWT)"},
		{name: "service account with kube", args: []string{"--kube", "--service-account", "sa"}, code: 2, stderr: "--service-account does not go with --kube"},
		{name: "unknown cloud", args: []string{"--cloud-name", "Mars", "x.yaml"}, code: 2, stderr: `--cloud-name "Mars" is not one of AzurePublicCloud`},
		{name: "valid", args: []string{"--kubectl=", "--issuer", "https://issuer.example", "../../examples/workload-identity.yaml"}, code: 0,
			stdout: "1 SecretProviderClass checked: 1 OK"},
		{name: "all examples", args: []string{"--kubectl=", "-f", "../../examples"}, code: 0, stdout: "5 SecretProviderClasses checked: 5 OK"},
		{name: "invalid", args: []string{"--kubectl=", "-f", "../../pkg/check/testdata/spc/invalid.yaml"}, code: 1, stdout: "3 SecretProviderClasses checked: 0 OK, 3 with problems"},
		{name: "stdin", args: []string{"--kubectl=", "-f", "-"}, stdin: "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a}\nspec: {provider: azure}\n",
			code: 1, stdout: "<stdin>:1: SecretProviderClass default/a: 3 problems"},
		{name: "unreadable", args: []string{"--kubectl=", "no-such.yaml"}, code: 1, stdout: "no-such.yaml: cannot read: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr.String())
			}
		})
	}
}

// TestJSON: -o json is one document a pipeline can read, with the outcome and every problem.
func TestJSON(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--kubectl=", "-o", "json", "-f", "../../pkg/check/testdata/spc/invalid.yaml", "-f", "../../examples/workload-identity.yaml"},
		nil, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep struct {
		OK      bool `json:"ok"`
		Classes []struct {
			Name     string `json:"name"`
			OK       bool   `json:"ok"`
			Problems []struct {
				File    string `json:"file"`
				Line    int    `json:"line"`
				Message string `json:"message"`
			} `json:"problems"`
		} `json:"secretProviderClasses"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	if rep.OK || len(rep.Classes) != 4 || !rep.Classes[3].OK || rep.Classes[0].OK {
		t.Errorf("report: %+v", rep)
	}
	if p := rep.Classes[0].Problems; len(p) != 7 || p[0].Line == 0 || p[0].File == "" {
		t.Errorf("problems of %s: %+v", rep.Classes[0].Name, p)
	}
}
