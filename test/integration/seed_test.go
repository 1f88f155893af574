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
	vaultB   = "kv-int-b"                             // a second vault in tenant, same secret names
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
	// appConfig is a JSON secret; every member value below is secret too.
	jsonDBPass  = "json-db-Pw9"
	jsonToken   = "json-tok-Qz1"
	jsonB64     = base64.StdEncoding.EncodeToString([]byte("json-bin-Kx4"))
	appConfig   = `{"db-password":"` + jsonDBPass + `", "api": {"token": "` + jsonToken + `", "port": 5432}, "list": [1, 2], "cert-b64": "` + jsonB64 + `"}`
	notJSON     = "not-json-Vb6 {"
	offValue    = "disabled-value-Tg2"
	taggedValue = "tagged-value-Mc8"
	plainValueB = "plain-value-vault-b-Ws5"
	pfxPassword = "pfx-Pass-Zr4!"
	// the secrets of vault B that selections choose from
	appDB, appAPI, appOther, appOff, appOld, appSoon = "app-db-Qa1", "app-api-Qa2", "other-Qa3", "app-off-Qa4", "app-old-Qa5", "app-soon-Qa6"
	laterValue                                       = "later-value-Hn3"
)

func secretValues() []string {
	return append(append([]string{plainValue, plainValueT2, jsonDBPass, jsonToken, jsonB64, "json-bin-Kx4", "not-json-Vb6", offValue, laterValue, taggedValue, plainValueB, pfxPassword,
		appDB, appAPI, appOther, appOff, appOld, appSoon}, dbPass...),
		base64.StdEncoding.EncodeToString(binary), hex.EncodeToString(binary))
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
				{Name: "app-config", Versions: []emulator.SecretVersion{{Value: appConfig, ContentType: "application/json"}}},
				{Name: "not-json", Versions: []emulator.SecretVersion{{Value: notJSON}}},
				{Name: "off", Versions: []emulator.SecretVersion{{Value: offValue, Enabled: ptr(false)}}},
				{Name: "pfx-pass", Versions: []emulator.SecretVersion{{Value: pfxPassword}}},
				{Name: "tagged", Versions: []emulator.SecretVersion{{Value: taggedValue, ContentType: "text/plain", Created: at(5),
					Tags: map[string]string{"team": "payments", "env": "prod"}, NotBefore: at(-1), Expires: at(24 * 365)}}},
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
				{Name: "web-pfx", Subject: "web.example.test", Chain: []string{"root", "leaf", "intermediate"}, Versions: 2, Tags: map[string]string{"team": "web"}},
				{Name: "web-pem", ContentType: "application/x-pem-file", KeyType: "EC", Subject: "pem.example.test"},
				{Name: "web-partial", Subject: "partial.example.test", Chain: []string{"leaf", "root"}},
				{Name: "locked", Subject: "locked.example.test", Exportable: ptr(false)},
			},
		}, {
			Name: vaultB,
			Secrets: []emulator.Secret{
				{Name: "plain", Versions: []emulator.SecretVersion{{Value: plainValueB}}},
				{Name: "app-db", Versions: []emulator.SecretVersion{{Value: appDB, Tags: map[string]string{"team": "payments", "env": "prod"}}}},
				{Name: "app-api", Versions: []emulator.SecretVersion{{Value: appAPI, Tags: map[string]string{"team": "payments", "env": "dev"}}}},
				{Name: "other", Versions: []emulator.SecretVersion{{Value: appOther, Tags: map[string]string{"team": "payments", "env": "prod"}}}},
				{Name: "app-off", Versions: []emulator.SecretVersion{{Value: appOff, Enabled: ptr(false), Tags: map[string]string{"team": "payments", "env": "prod"}}}},
				{Name: "app-old", Versions: []emulator.SecretVersion{{Value: appOld, Expires: at(-1), Tags: map[string]string{"team": "payments", "env": "prod"}}}},
				{Name: "app-soon", Versions: []emulator.SecretVersion{{Value: appSoon, NotBefore: at(24 * 365 * 50), Tags: map[string]string{"team": "payments", "env": "prod"}}}},
			},
			Certificates: []emulator.Certificate{{Name: "app-cert", Subject: "app.example.test", Tags: map[string]string{"team": "payments"}}},
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
			{Identity: spOK, Vault: vaultB, Types: all},
			{Identity: wiApp, Vault: vault, Types: all},
			{Identity: wiT2, Vault: vault2, Types: all},
			{Identity: miSystem, Vault: vault, Types: all},
			{Identity: miUser, Vault: vault, Types: []string{"secret"}},
		},
	}
}
