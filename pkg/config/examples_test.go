package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// exampleIdentity is the identity each example in examples/ is written for, as its file name and
// its first comment say.
var exampleIdentity = map[string]IdentityMode{
	"azure-stack.yaml":       ManagedIdentity, // useVMManagedIdentity on Azure Stack Hub
	"managed-identity.yaml":  ManagedIdentity,
	"service-principal.yaml": ServicePrincipal,
	"sync-tls-secret.yaml":   WorkloadIdentity, // clientID, no other identity setting
	"workload-identity.yaml": WorkloadIdentity,
	// examples/features/: this provider's own object fields, one example each.
	"features/json-key.yaml":       WorkloadIdentity,
	"features/selection.yaml":      WorkloadIdentity,
	"features/optional.yaml":       WorkloadIdentity,
	"features/key-and-chain.yaml":  WorkloadIdentity,
	"features/pfx-password.yaml":   WorkloadIdentity,
	"features/several-vaults.yaml": WorkloadIdentity,
	"features/metadata.yaml":       WorkloadIdentity,
}

// TestExamplesParse keeps the example SecretProviderClasses in examples/ valid for the identity
// each is written for. Each gets only what that identity needs from the driver, as a real mount
// would: the service account token only when the example sets clientID, the nodePublishSecretRef
// secret only when it relies on a service principal (neither clientID nor useVMManagedIdentity),
// and nothing else; so an example whose identity settings are broken does not parse, or parses
// as another identity.
func TestExamplesParse(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../examples/*.yaml")
	features, _ := filepath.Glob("../../examples/features/*.yaml")
	files = append(files, features...)
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name, _ := filepath.Rel("../../examples", f)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, ok := exampleIdentity[name]
			if !ok {
				t.Fatalf("add %s to exampleIdentity with the identity it is written for", name)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var spc struct {
				Spec struct {
					Provider   string            `json:"provider"`
					Parameters map[string]string `json:"parameters"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(data, &spc); err != nil {
				t.Fatal(err)
			}
			if spc.Spec.Provider != "azure" {
				t.Errorf("provider = %q, want azure", spc.Spec.Provider)
			}
			params := spc.Spec.Parameters
			var token, secret bool
			// The driver adds the pod's service account token for the audience its CSIDriver asks;
			// the example needs one only when it names a client ID.
			if strings.TrimSpace(params[ClientID]) != "" {
				audience := WorkloadIdentityAudience
				if strings.EqualFold(strings.TrimSpace(params[UseAzureTokenProxy]), "true") {
					audience = IdentityBindingAudience
				}
				params[ServiceAccountTokens] = tokensJSON(audience, saToken)
				token = true
			}
			var secrets string
			if !token && !strings.EqualFold(strings.TrimSpace(params[UseVMManagedIdentity]), "true") {
				secrets = `{"clientid":"id","clientsecret":"s"}`
				secret = true
			}
			attrs, err := json.Marshal(params)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(string(attrs), secrets, "420", Defaults{})
			if err != nil {
				t.Fatalf("example does not parse with the %s it needs: %v", credentialsGiven(token, secret), err)
			}
			if cfg.Identity.Mode != want {
				t.Errorf("identity = %s, want %s (the example's identity settings are wrong)", cfg.Identity.Mode, want)
			}

			// What was given is needed: without it the example does not parse.
			if token {
				delete(params, ServiceAccountTokens)
				noToken, _ := json.Marshal(params)
				if _, err := Parse(string(noToken), "", "420", Defaults{}); err == nil {
					t.Error("the example also parses without the service account token")
				}
			}
			if secret {
				if _, err := Parse(string(attrs), "", "420", Defaults{}); err == nil {
					t.Error("the example also parses without the nodePublishSecretRef secret")
				}
			}
		})
	}
	for name := range exampleIdentity {
		if !seen[name] {
			t.Errorf("exampleIdentity names %s, which is not in examples/", name)
		}
	}
}

func credentialsGiven(token, secret bool) string {
	switch {
	case token:
		return "service account token"
	case secret:
		return "nodePublishSecretRef secret"
	}
	return "nothing (managed identity)"
}

// TestREADMEExamplesAreExamples keeps every SecretProviderClass shown in README.md (and in the
// feature sections drafted for it) identical to a file of examples/, which TestExamplesParse
// parses: a README example cannot rot.
func TestREADMEExamplesAreExamples(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../../examples/*.yaml")
	features, _ := filepath.Glob("../../examples/features/*.yaml")
	known := map[string]string{}
	for _, f := range append(files, features...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		known[strings.TrimSpace(string(data))] = f
	}
	for _, doc := range []string{"../../README.md", "../../docs/drafts/features-readme.md"} {
		data, err := os.ReadFile(doc)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		blocks := strings.Split(string(data), "```yaml\n")
		for _, b := range blocks[1:] {
			block, _, _ := strings.Cut(b, "```")
			if !strings.Contains(block, "kind: SecretProviderClass") {
				continue
			}
			if _, ok := known[strings.TrimSpace(block)]; !ok {
				first, _, _ := strings.Cut(block, "\n")
				t.Errorf("%s shows a SecretProviderClass (%q...) that is not a file of examples/: copy it there and keep the two identical", doc, first)
			}
		}
	}
}
