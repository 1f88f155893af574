package check

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/akv-csi/provider/pkg/config"
)

// TestExplainGolden keeps the explanation of each identity mode, and of what a check refuses, as
// the golden files say (go test ./pkg/check -run TestExplainGolden -update rewrites them).
func TestExplainGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		file   string
		ok     bool
		modes  []string
		golden string
		json   bool
	}{
		{name: "workload identity", file: "workload-identity.yaml", ok: true, modes: []string{"workload identity"}, json: true},
		{name: "identity binding", file: "identity-binding.yaml", ok: true, modes: []string{"identity binding"}},
		{name: "managed identity", file: "managed-identity.yaml", ok: true, modes: []string{"managed identity", "managed identity"}},
		{name: "service principal", file: "service-principal.yaml", ok: true, modes: []string{"service principal"}},
		{name: "invalid", file: "invalid.yaml", modes: []string{"", "workload identity", "workload identity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep, text, js := runCheck(t, offline(filepath.Join("testdata", "spc", tt.file)))
			if rep.OK != tt.ok {
				t.Errorf("OK = %v, want %v:\n%s", rep.OK, tt.ok, text)
			}
			var modes []string
			for _, r := range rep.Classes {
				mode := ""
				if r.Explain != nil {
					mode = r.Explain.Identity.Mode
				}
				modes = append(modes, mode)
			}
			if diff := cmp.Diff(tt.modes, modes); diff != "" {
				t.Errorf("identity modes (-want +got):\n%s", diff)
			}
			base := strings.TrimSuffix(tt.file, ".yaml")
			golden(t, "explain-"+base+".txt", text)
			if tt.json {
				golden(t, "explain-"+base+".json", js)
			}
		})
	}
}

// exampleModes is the identity each SecretProviderClass of examples/ is written for, and the rule
// of the identity precedence that picks it.
var exampleModes = map[string]struct {
	mode config.IdentityMode
	rule int
}{
	"azure-stack.yaml":       {config.ManagedIdentity, 5},
	"managed-identity.yaml":  {config.ManagedIdentity, 5},
	"service-principal.yaml": {config.ServicePrincipal, 7},
	"sync-tls-secret.yaml":   {config.WorkloadIdentity, 6},
	"workload-identity.yaml": {config.WorkloadIdentity, 6},
}

// TestExamples checks every SecretProviderClass of examples/ (the README's) and the captured
// driver request of pkg/config/testdata: each is valid, with the identity it is written for, the
// rule that picks it, a role for every object and every file it writes.
func TestExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		want, ok := exampleModes[name]
		if !ok {
			t.Errorf("add %s to exampleModes", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rep, text, _ := runCheck(t, offline(f))
			if !rep.OK || len(rep.Classes) != 1 {
				t.Fatalf("want one valid SecretProviderClass:\n%s", text)
			}
			checkExplanation(t, rep.Classes[0], want.mode, want.rule)
		})
	}
	if len(files) != len(exampleModes) {
		t.Errorf("exampleModes has %d entries for %d examples", len(exampleModes), len(files))
	}

	t.Run("driver-mount-request.json", func(t *testing.T) {
		t.Parallel()
		// The parameters of a captured driver request are the SecretProviderClass's, plus what the
		// driver adds (csi.storage.k8s.io/*, secretProviderClass), which the check adds itself.
		data, err := os.ReadFile("../config/testdata/driver-mount-request.json")
		if err != nil {
			t.Fatal(err)
		}
		var attrs map[string]string
		if err := json.Unmarshal(data, &attrs); err != nil {
			t.Fatal(err)
		}
		params := map[string]string{}
		for k, v := range attrs {
			if !strings.HasPrefix(k, "csi.storage.k8s.io/") && k != "secretProviderClass" {
				params[k] = v
			}
		}
		o := offline()
		o.Namespace, o.ServiceAccount = attrs[config.PodNamespace], attrs[config.ServiceAccountName]
		if err := o.validate(); err != nil && !strings.Contains(err.Error(), "no SecretProviderClass") {
			t.Fatal(err)
		}
		c := &checker{opts: o}
		res := c.check(t.Context(), target{spc: &spc{Name: attrs["secretProviderClass"], Parameters: params}})
		if !res.OK {
			t.Fatalf("problems: %v", res.Problems)
		}
		checkExplanation(t, res, config.WorkloadIdentity, 6)
		if got := res.Explain.FederatedCredential.Subject; got != "system:serviceaccount:default:workload-identity-sa" {
			t.Errorf("subject %q", got)
		}
		if len(res.Explain.Objects) != 2 {
			t.Errorf("%d objects, want 2", len(res.Explain.Objects))
		}
	})
}

func checkExplanation(t *testing.T, r *Result, mode config.IdentityMode, rule int) {
	t.Helper()
	e := r.Explain
	if e == nil {
		t.Fatal("no explanation")
	}
	if e.Identity.Mode != mode.String() || e.Identity.Rule != rule {
		t.Errorf("identity %s by rule %d, want %s by rule %d", e.Identity.Mode, e.Identity.Rule, mode, rule)
	}
	if rules := config.IdentityPrecedence(); e.Identity.When != plain(rules[rule-1].When) {
		t.Errorf("why %q is not rule %d of config.IdentityPrecedence", e.Identity.When, rule)
	}
	if (mode == config.WorkloadIdentity) != (e.FederatedCredential != nil) {
		t.Errorf("federated credential %+v for %s", e.FederatedCredential, mode)
	}
	for _, o := range e.Objects {
		if o.Role == "" || o.Permissions == "" || len(o.Files) == 0 {
			t.Errorf("object %+v lacks a role, a permission or a file", o)
		}
	}
}

// TestIdentityRuleOfEveryMode: the rule the explanation names is the parser's own, for a
// SecretProviderClass of each identity mode and each refusal.
func TestIdentityRuleOfEveryMode(t *testing.T) {
	t.Parallel()
	base := map[string]string{config.KeyVaultName: vault, config.TenantID: tenant, config.Objects: objectsParam("objectName: a\nobjectType: secret")}
	tests := []struct {
		params map[string]string
		mode   config.IdentityMode
		rule   int
	}{
		{map[string]string{config.UseAzureTokenProxy: "true", config.ClientID: "uami"}, config.IdentityBinding, 2},
		{map[string]string{config.UseVMManagedIdentity: "true", config.ClientID: "app"}, config.ManagedIdentity, 5},
		{map[string]string{config.ClientID: "app"}, config.WorkloadIdentity, 6},
		{map[string]string{}, config.ServicePrincipal, 7},
	}
	for _, tt := range tests {
		params := map[string]string{}
		for k, v := range base {
			params[k] = v
		}
		for k, v := range tt.params {
			params[k] = v
		}
		o := offline()
		_ = o.validate()
		c := &checker{opts: o}
		res := c.check(t.Context(), target{spc: &spc{Name: "x", Parameters: params}})
		if !res.OK {
			t.Fatalf("%v: %v", tt.params, res.Problems)
		}
		checkExplanation(t, res, tt.mode, tt.rule)
	}
}

// TestManifestProblems: what is wrong with a manifest itself is reported with its line, with the
// parser's problems, all at once.
func TestManifestProblems(t *testing.T) {
	t.Parallel()
	rep, text, _ := runCheck(t, offline("testdata/spc/invalid.yaml"))
	if rep.OK {
		t.Fatalf("accepted:\n%s", text)
	}
	for _, w := range []string{
		"testdata/spc/invalid.yaml:29: spec.parameters.useVMManagedIdentity is a boolean, not a string: quote it (\"true\")",
		`testdata/spc/invalid.yaml:27: keyvaultName "kv_team_a" must be 3-24 characters of letters, digits and '-'`,
		"testdata/spc/invalid.yaml:30: usePodIdentity is not supported",
		`testdata/spc/invalid.yaml:26: only one identity mode can be enabled at a time`,
		`testdata/spc/invalid.yaml:36: objects[1] ("signing-key"): objectVersionHistory 101 is more than the 100 allowed`,
		`testdata/spc/invalid.yaml:40: objects[2] ("web-tls"): objectType "certificate" is not one of secret, key, cert`,
		`testdata/spc/invalid.yaml:40: objects[2] ("web-tls"): filePermission "0800" must be an octal mode`,
		`testdata/spc/invalid.yaml:51: spec.provider "Azure" must be "azure", in lower case`,
		`testdata/spc/invalid.yaml:56: secretObjects[0].data[0].objectName "web-tls" is not a file of this mount (it writes "web.pem")`,
		`testdata/spc/invalid.yaml:53: secretObjects[0] ("web-tls") has type kubernetes.io/tls, which needs the keys tls.crt and tls.key`,
		`testdata/spc/invalid.yaml:69: apiVersion "secrets-store.csi.x-k8s.io/v2" is not one the driver serves`,
		"skipped 1 ConfigMap, 1 SecretProviderClass of provider vault",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("the output lacks %q:\n%s", w, text)
		}
	}

	for name, manifest := range map[string]string{
		"not YAML":         "apiVersion: [\n",
		"no such file":     "",
		"empty parameter":  "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a}\nspec:\n  provider: azure\n  parameters:\n    clientID:\n",
		"list parameter":   "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a}\nspec:\n  provider: azure\n  parameters:\n    objects: [a]\n",
		"no provider":      "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a}\nspec: {}\n",
		"nothing to check": "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n",
	} {
		o := offline("-")
		o.Stdin = strings.NewReader(manifest)
		if name == "no such file" {
			o = offline("testdata/spc/nonexistent.yaml")
		}
		rep, text, _ := runCheck(t, o)
		want := map[string]string{
			"not YAML": "<stdin>: not YAML", "no such file": "testdata/spc/nonexistent.yaml: cannot read: no such file or directory",
			"empty parameter": "<stdin>:7: spec.parameters.clientID is empty (null), not a string", "list parameter": "<stdin>:7: spec.parameters.objects must be a string, not a list",
			"no provider": "<stdin>:1: spec.provider is missing", "nothing to check": "0 SecretProviderClasses checked: 0 OK; skipped 1 Secret",
		}[name]
		if !strings.Contains(text, want) {
			t.Errorf("%s: the output lacks %q:\n%s", name, want, text)
		}
		if rep.OK != (name == "nothing to check") {
			t.Errorf("%s: OK = %v", name, rep.OK)
		}
	}
}

// fakeKubectl writes a kubectl that answers the given commands (their arguments joined by spaces)
// with the given files' contents, and fails any other.
func fakeKubectl(t *testing.T, answers map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var script strings.Builder
	script.WriteString("#!/bin/sh\ncase \"$*\" in\n")
	i := 0
	for args, answer := range answers {
		file := filepath.Join(dir, "answer-"+string(rune('a'+i)))
		i++
		if err := os.WriteFile(file, []byte(answer), 0o600); err != nil {
			t.Fatal(err)
		}
		script.WriteString("  \"" + args + "\") cat " + file + " ;;\n")
	}
	script.WriteString("  *) echo \"error: the server doesn't have a resource type ($*)\" >&2; exit 1 ;;\nesac\n")
	path := filepath.Join(dir, "kubectl")
	if err := os.WriteFile(path, []byte(script.String()), 0o700); err != nil { //nolint:gosec // an executable test script
		t.Fatal(err)
	}
	return path
}

// TestIssuerFromTheCluster: without --issuer, the federated credential's issuer is the current
// kube context's; when kubectl fails, a warning says what to pass instead.
func TestIssuerFromTheCluster(t *testing.T) {
	t.Parallel()
	o := offline("testdata/spc/workload-identity.yaml")
	o.Issuer, o.KubeContext = "", "prod"
	o.Kubectl = fakeKubectl(t, map[string]string{
		"--context prod get --raw /.well-known/openid-configuration": `{"issuer":"https://eastus.oic.prod-aks.azure.com/tenant/cluster/","jwks_uri":"x"}`,
	})
	rep, text, _ := runCheck(t, o)
	fc := rep.Classes[0].Explain.FederatedCredential
	if fc == nil || fc.Issuer != "https://eastus.oic.prod-aks.azure.com/tenant/cluster/" || len(rep.Classes[0].Warnings) > 0 {
		t.Errorf("issuer: %+v\n%s", fc, text)
	}

	o.KubeContext = "other"
	rep, text, _ = runCheck(t, o)
	if !rep.OK || rep.Classes[0].Explain.FederatedCredential.Issuer != "" {
		t.Fatalf("an unknown issuer is no problem:\n%s", text)
	}
	if w := rep.Classes[0].Warnings; len(w) != 1 || !strings.Contains(w[0], "the cluster's OIDC issuer is unknown (kubectl --context other get --raw /.well-known/openid-configuration: error: the server doesn't have") {
		t.Errorf("warnings: %q", w)
	}
}
