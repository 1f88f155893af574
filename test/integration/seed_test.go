package integration

import (
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
)

const (
	vault    = "kv-int"
	tenant   = "aaaaaaaa-1111-4000-8000-000000000001"
	spOK     = "5b0a0000-0000-4000-8000-0000000000a1" // service principal granted everything
	spDenied = "5b0a0000-0000-4000-8000-0000000000a2" // service principal with no grant
	spSecret = "sp-client-secret-Zq9"
	wiApp    = "5b0a0000-0000-4000-8000-0000000000b1" // federated with default/app-sa
	wiTeamB  = "5b0a0000-0000-4000-8000-0000000000b2" // federated with team-b/app-sa, no grant
	tenant2  = "aaaaaaaa-2222-4000-8000-000000000002"
	vault2   = "kv-int-t2"                            // in tenant2, same secret names
	wiT2     = "5b0a0000-0000-4000-8000-0000000000b3" // tenant2 app federated with default/app-sa
	miSystem = "5b0a0000-0000-4000-8000-0000000000c1" // the node's system-assigned identity
	miUser   = "5b0a0000-0000-4000-8000-0000000000c2" // a user-assigned identity of the node
)

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func at(h int) *time.Time { t := t0.Add(time.Duration(h) * time.Hour); return &t }
func ptr[T any](v T) *T   { return &v }

// Secret values that must never appear in a log or an error message.
var (
	dbPass       = []string{"db-pass-1-Wk3", "db-pass-2-Hq7", "db-pass-3-Jd2", "db-pass-4-Xm8"}
	binary       = []byte{0x00, 0x01, 0xfe, 0xff, 'k', 'e', 'y'}
	plainValue   = "plain-value-Rt5"
	plainValueT2 = "plain-value-tenant2-Lp4"
)

func secretValues() []string {
	return append(append([]string{plainValue, plainValueT2}, dbPass...), base64.StdEncoding.EncodeToString(binary), hex.EncodeToString(binary))
}

func seed() *emulator.Seed {
	all := []string{"secret", "key", "certificate"}
	return &emulator.Seed{
		TenantID: tenant,
		PageSize: 2, // history reads page through the version list
		Vaults: []emulator.Vault{{
			Name: vault,
			Secrets: []emulator.Secret{
				{Name: "db-pass", Versions: []emulator.SecretVersion{
					{Version: "00000000000000000000000000000001", Value: dbPass[0], Created: at(0)},
					{Version: "00000000000000000000000000000002", Value: dbPass[1], Created: at(1)},
					{Version: "00000000000000000000000000000003", Value: dbPass[2], Created: at(2), Enabled: ptr(false)},
					{Version: "00000000000000000000000000000004", Value: dbPass[3], Created: at(3)},
				}},
				{Name: "plain", Versions: []emulator.SecretVersion{{Value: plainValue, ContentType: "text/plain"}}},
				{Name: "b64", Versions: []emulator.SecretVersion{{Value: base64.StdEncoding.EncodeToString(binary)}}},
				{Name: "hexed", Versions: []emulator.SecretVersion{{Value: hex.EncodeToString(binary)}}},
			},
			Keys: []emulator.Key{
				{Name: "rsa", Kty: "RSA", Versions: 2},
				{Name: "rsa-hsm", Kty: "RSA-HSM", Size: 3072},
				{Name: "ec256", Kty: "EC", Curve: "P-256"},
				{Name: "ec384-hsm", Kty: "EC-HSM", Curve: "P-384"},
				{Name: "ec521", Kty: "EC", Curve: "P-521"},
				{Name: "sym", Kty: "oct"},
			},
			Certificates: []emulator.Certificate{
				{Name: "web-pfx", Subject: "web.example.test", Chain: []string{"root", "leaf", "intermediate"}, Versions: 2},
				{Name: "web-pem", ContentType: "application/x-pem-file", KeyType: "EC", Subject: "pem.example.test"},
				{Name: "web-partial", Subject: "partial.example.test", Chain: []string{"leaf", "root"}},
			},
		}, {
			Name: vault2, TenantID: tenant2,
			Secrets: []emulator.Secret{{Name: "plain", Versions: []emulator.SecretVersion{{Value: plainValueT2}}}},
		}},
		ServicePrincipals: []emulator.ServicePrincipal{
			{ClientID: spOK, Secrets: []string{spSecret}},
			{ClientID: spDenied, Secrets: []string{spSecret}},
			{ClientID: wiApp, Federated: []emulator.FederatedCredential{{Issuer: emulator.BuiltinIssuer, Subject: "system:serviceaccount:default:app-sa"}}},
			{ClientID: wiTeamB, Federated: []emulator.FederatedCredential{{Issuer: emulator.BuiltinIssuer, Subject: "system:serviceaccount:team-b:app-sa"}}},
			{ClientID: wiT2, TenantID: tenant2, Federated: []emulator.FederatedCredential{{Issuer: emulator.BuiltinIssuer, Subject: "system:serviceaccount:default:app-sa"}}},
		},
		ManagedIdentities: []emulator.ManagedIdentity{{ClientID: miSystem, SystemAssigned: true}, {ClientID: miUser}},
		Grants: []emulator.Grant{
			{Identity: spOK, Vault: vault, Types: all},
			{Identity: wiApp, Vault: vault, Types: all},
			{Identity: wiT2, Vault: vault2, Types: all},
			{Identity: miSystem, Vault: vault, Types: all},
			{Identity: miUser, Vault: vault, Types: []string{"secret"}},
		},
	}
}
