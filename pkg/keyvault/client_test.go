package keyvault

import (
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// TestSecretWithoutValueIsAnError: Azure's provider fails on a secret with no value; an empty
// value is a legitimate (empty) file.
func TestSecretWithoutValueIsAnError(t *testing.T) {
	t.Parallel()
	id := azsecrets.ID("https://kv.vault.azure.net/secrets/s/0123abcd")
	_, err := secretOf(azsecrets.Secret{ID: &id})
	if KindOf(err) != KindInvalidArgument || !strings.Contains(err.Error(), "version 0123abcd of the secret without a value") {
		t.Errorf("no value: %v", err)
	}
	empty := ""
	if s, err := secretOf(azsecrets.Secret{ID: &id, Value: &empty}); err != nil || s.Value != "" || s.Version != "0123abcd" {
		t.Errorf("empty value: %+v, %v", s, err)
	}
}

// TestAbsentEnabledMeansEnabled: a version whose attributes carry no "enabled" is enabled, as
// Azure's provider reads it; only an explicit false disables it.
func TestAbsentEnabledMeansEnabled(t *testing.T) {
	t.Parallel()
	f, tr := false, true
	now := time.Now()
	for _, tc := range []struct {
		enabled *bool
		want    bool
	}{{nil, true}, {&tr, true}, {&f, false}} {
		if got := versionInfo("v", tc.enabled, &now).Enabled; got != tc.want {
			t.Errorf("enabled %v: got %v, want %v", tc.enabled, got, tc.want)
		}
	}
}
