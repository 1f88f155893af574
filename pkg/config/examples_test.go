package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestExamplesParse keeps the example SecretProviderClasses in examples/ valid.
func TestExamplesParse(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
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
			params[ServiceAccountTokens] = tokensJSON(WorkloadIdentityAudience, saToken)
			attrs, _ := json.Marshal(params)
			if _, err := Parse(string(attrs), `{"clientid":"id","clientsecret":"s"}`, "420", Defaults{}); err != nil {
				t.Errorf("example does not parse: %v", err)
			}
		})
	}
}
