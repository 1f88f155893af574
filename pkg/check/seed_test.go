package check

import (
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
)

const (
	vault          = "kv-check"
	tenant         = "aaaaaaaa-1111-4000-8000-0000000000c1"
	otherTenant    = "aaaaaaaa-2222-4000-8000-0000000000c2"
	wiApp          = "5b0a0000-0000-4000-8000-0000000000d1" // federated with default/app-sa; secrets and certificates only
	wiAll          = "5b0a0000-0000-4000-8000-0000000000d2" // federated with default/app-sa; everything
	operatorApp    = "5b0a0000-0000-4000-8000-0000000000d3" // the operator's own login (the fake az); secrets only
	operatorSecret = "operator-client-secret-Vq4"           //nolint:gosec // test data
)

// Secret values that must never be printed or logged.
var (
	dbPassword = []string{"db-password-1-Hx7", "db-password-2-Kq2"}
	apiKey     = "api-key-value-Zr5"
)

func secretValues() []string { return append([]string{apiKey, operatorSecret}, dbPassword...) }

// seed is deterministic, so versions, keys and certificates (and the golden files) are the same
// on every run.
func seed() *emulator.Seed {
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	at := func(h int) *time.Time { t := t0.Add(time.Duration(h) * time.Hour); return &t }
	return &emulator.Seed{
		TenantID:      tenant,
		Deterministic: true,
		Vaults: []emulator.Vault{{
			Name: vault,
			Secrets: []emulator.Secret{
				{Name: "db-password", Versions: []emulator.SecretVersion{
					{Value: dbPassword[0], ContentType: "text/plain", Created: at(0)},
					{Value: dbPassword[1], ContentType: "text/plain", Created: at(1)},
				}},
				{Name: "api-key", Versions: []emulator.SecretVersion{{Value: apiKey, Created: at(0)}}},
			},
			Keys: []emulator.Key{
				{Name: "signing-rsa", Kty: "RSA", Size: 2048},
				{Name: "hsm-ec", Kty: "EC-HSM", Curve: "P-384"},
			},
			Certificates: []emulator.Certificate{
				{Name: "web-tls", Subject: "web.kv-check.test"},
			},
		}},
		ServicePrincipals: []emulator.ServicePrincipal{
			{ClientID: wiApp, Federated: []emulator.FederatedCredential{{Issuer: emulator.BuiltinIssuer, Subject: "system:serviceaccount:default:app-sa"}}},
			{ClientID: wiAll, Federated: []emulator.FederatedCredential{{Issuer: emulator.BuiltinIssuer, Subject: "system:serviceaccount:default:app-sa"}}},
			{ClientID: operatorApp, Secrets: []string{operatorSecret}},
		},
		Grants: []emulator.Grant{
			{Identity: wiApp, Vault: vault, Types: []string{"secret", "certificate"}},
			{Identity: wiAll, Vault: vault},
			{Identity: operatorApp, Vault: vault, Types: []string{"secret"}},
		},
	}
}
