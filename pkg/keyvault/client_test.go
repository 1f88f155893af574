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

// TestAttributesAndTags: a secret's attributes and tags are copied (nil attributes: none), and
// the tags are a copy the SDK's value cannot change.
func TestAttributesAndTags(t *testing.T) {
	t.Parallel()
	id := azsecrets.ID("https://kv.vault.azure.net/secrets/s/0123abcd")
	value, team := "v", "payments"
	nbf, exp := time.Unix(100, 0), time.Unix(200, 0)
	f := false
	s, err := secretOf(azsecrets.Secret{ID: &id, Value: &value, Tags: map[string]*string{"team": &team, "empty": nil},
		Attributes: &azsecrets.SecretAttributes{Enabled: &f, NotBefore: &nbf, Expires: &exp}})
	if err != nil {
		t.Fatal(err)
	}
	a := s.Attributes
	if a.Enabled == nil || *a.Enabled || !a.NotBefore.Equal(nbf) || !a.Expires.Equal(exp) || a.Created != nil ||
		a.Tags["team"] != "payments" || a.Tags["empty"] != "" || len(a.Tags) != 2 {
		t.Errorf("attributes %+v", a)
	}
	team = "changed"
	if a.Tags["team"] != "payments" {
		t.Error("tags alias the SDK's strings")
	}
	bare, err := secretOf(azsecrets.Secret{ID: &id, Value: &value})
	if err != nil || bare.Attributes.Enabled != nil || bare.Attributes.Tags != nil {
		t.Errorf("no attributes: %+v, %v", bare.Attributes, err)
	}
}
