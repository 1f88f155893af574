package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	azcloud "github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
)

// Claims are the unverified claims of a service account token that the provider reads: who the
// token names and until when. Only Entra ID's acceptance of the token proves them.
type Claims struct {
	Issuer  string
	Subject string
	Expiry  time.Time
}

// maxTokenBytes bounds the token the provider decodes (a Kubernetes token is about 1 KiB).
const maxTokenBytes = 16 << 10

// ReadClaims decodes a JWT's payload without verifying its signature.
func ReadClaims(token string) (Claims, bool) {
	if len(token) > maxTokenBytes {
		return Claims{}, false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, false
	}
	var c struct {
		Iss string  `json:"iss"`
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return Claims{}, false
	}
	return Claims{Issuer: c.Iss, Subject: c.Sub, Expiry: time.Unix(int64(c.Exp), 0)}, true
}

// TokenSubject reads the issuer and subject of a service account token without verifying it.
// The subject is system:serviceaccount:<namespace>:<name>.
func TokenSubject(token string) (issuer, subject string) {
	c, _ := ReadClaims(token)
	return c.Issuer, c.Subject
}

// ServiceAccountSubject is the subject of the tokens of a pod's service account.
func ServiceAccountSubject(pod config.Pod) string {
	return "system:serviceaccount:" + pod.Namespace + ":" + pod.ServiceAccount
}

// CheckTokenSubject refuses a token that does not name the pod's own service account. The pod's
// namespace and service account come from the kubelet's volume context, which a
// SecretProviderClass cannot override; the token may come from SecretProviderClass parameters
// when the CSIDriver has no tokenRequests, so it proves nothing on its own.
func CheckTokenSubject(token string, pod config.Pod) error {
	if pod.Namespace == "" || pod.ServiceAccount == "" {
		return fmt.Errorf("the driver sent no pod namespace or service account, so the service account token cannot be matched to the pod: " +
			"set podInfoOnMount: true on the secrets-store.csi.k8s.io CSIDriver (the driver chart does)")
	}
	c, ok := ReadClaims(token)
	want := ServiceAccountSubject(pod)
	switch {
	case !ok || c.Subject == "":
		return fmt.Errorf("the service account token is not a readable JWT with a subject; pod %s runs as %q", pod, want)
	case c.Subject != want:
		return fmt.Errorf("the service account token names %q but pod %s runs as %q: "+
			"only the pod's own token is accepted (set tokenRequests on the CSIDriver so the kubelet sends it)", truncate(c.Subject, 300), pod, want)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// TokenHash names a token in memory without keeping it.
func TokenHash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// KeyVaultScope is the scope of Key Vault tokens in env, as the SDK derives it from the vault's
// challenge (resource "https://<suffix>"), so a proof's access token is the one later reads use.
func KeyVaultScope(env azcloud.Environment) string {
	return "https://" + env.KeyVaultDNSSuffix + "/.default"
}

// Prove asks Entra ID for a Key Vault token with cred: success proves the credential's assertion.
// The request is the one azcore's bearer token policy makes for a Key Vault read (same scope and
// tenant, CAE on), so the token it caches is the one the credential's reads then use.
func Prove(ctx context.Context, cred azcore.TokenCredential, env azcloud.Environment, tenantID string) error {
	_, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{KeyVaultScope(env)}, TenantID: tenantID, EnableCAE: true})
	return err
}
