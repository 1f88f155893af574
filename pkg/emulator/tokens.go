package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const tokenLifetime = 3599 * time.Second

// tokenSerial makes every service account token this process signs unique.
var tokenSerial atomic.Int64

// issueAccessToken signs an Entra-style v1 access token.
func (e *Emulator) issueAccessToken(tenant, clientID, audience string, now time.Time) (string, time.Time, error) {
	exp := now.Add(tokenLifetime)
	oid := pseudoGUID("oid", clientID)
	claims := jwt.MapClaims{
		"aud":   audience,
		"iss":   "https://sts.windows.net/" + tenant + "/",
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   exp.Unix(),
		"appid": clientID,
		"azp":   clientID,
		"oid":   oid,
		"sub":   oid,
		"tid":   tenant,
		"idtyp": "app",
		"ver":   "1.0",
		"uti":   pseudoGUID("uti", clientID, fmt.Sprint(now.UnixNano())),
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = e.tokenKid
	s, err := tok.SignedString(e.tokenKey)
	return s, exp, err
}

// pseudoGUID derives a stable GUID-shaped id.
func pseudoGUID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// accessToken is what Key Vault needs from a verified bearer token.
type accessToken struct {
	clientID, tenant string
	audiences        []string
}

// verifyAccessToken checks signature and lifetime; the caller checks
// tenant and audience. The error text is an AKV10xxx message.
// akvError is one of Key Vault's own 401 messages, kept word for word (with its full stop).
type akvError string

func (e akvError) Error() string { return string(e) }

// Key Vault's 401 messages.
const (
	akvTokenExpired = "AKV10000: Request is missing a Bearer or PoP token. Token is expired." //nolint:gosec // a message, not a credential
	akvUnknownKey   = "AKV10046: Unable to find matching signing key for token."
	akvMalformed    = "AKV10005: Invalid token. The token is malformed."
)

func (e *Emulator) verifyAccessToken(raw string) (*accessToken, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &e.tokenKey.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, akvError(akvTokenExpired)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, akvError(akvUnknownKey)
	case err != nil:
		return nil, akvError(akvMalformed)
	}
	aud, _ := claims.GetAudience()
	tid, _ := claims["tid"].(string)
	appid, _ := claims["appid"].(string)
	return &accessToken{clientID: appid, tenant: tid, audiences: aud}, nil
}

// SignServiceAccountToken returns a Kubernetes-style service account token
// signed by BuiltinIssuer, usable as a client assertion.
func (e *Emulator) SignServiceAccountToken(namespace, serviceAccount, audience string, ttl time.Duration) (string, error) {
	if namespace == "" || serviceAccount == "" {
		return "", errors.New("namespace and service account are required")
	}
	if audience == "" {
		audience = DefaultFederatedAudience
	}
	if ttl <= 0 {
		ttl = time.Hour
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": BuiltinIssuer,
		"sub": "system:serviceaccount:" + namespace + ":" + serviceAccount,
		"aud": []string{audience},
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"jti": pseudoGUID("jti", strconv.FormatInt(tokenSerial.Add(1), 10), now.String()), // every token differs, as the kubelet's do
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]string{"name": serviceAccount, "uid": pseudoGUID("sa", namespace, serviceAccount)},
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = e.issuerKid
	return tok.SignedString(e.issuerKey)
}

// assertionError is a token endpoint failure for a client assertion.
type assertionError struct {
	status int
	code   string
	aadsts int
	msg    string
}

// checkAssertion validates a client assertion for sp: a federated
// credential must match issuer, subject and audience, and the issuer's key
// must verify the signature.
func (e *Emulator) checkAssertion(sp *ServicePrincipal, raw string) *assertionError {
	iss, sub, aud, aerr := unverifiedClaims(raw)
	if aerr != nil {
		return aerr
	}
	var match bool
	for _, f := range sp.Federated {
		want := f.Audience
		if want == "" {
			want = DefaultFederatedAudience
		}
		if f.Issuer == iss && f.Subject == sub && containsExact(aud, want) {
			match = true
			break
		}
	}
	if !match {
		return &assertionError{400, "invalid_request", 70021, fmt.Sprintf(
			"No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'.",
			iss, sub, strings.Join(aud, ","))}
	}
	return e.checkIssuerSignature(raw, iss)
}

// unverifiedClaims reads a client assertion's issuer, subject and audience before it is verified.
func unverifiedClaims(raw string) (iss, sub string, aud []string, _ *assertionError) {
	unverified := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, unverified); err != nil {
		return "", "", nil, &assertionError{400, "invalid_request", 50027, "JWT token is invalid or malformed."}
	}
	iss, _ = unverified.GetIssuer()
	sub, _ = unverified.GetSubject()
	aud, _ = unverified.GetAudience()
	return iss, sub, aud, nil
}

// checkIssuerSignature verifies a token with the keys of its issuer, within its lifetime, as
// Entra ID verifies a client assertion.
func (e *Emulator) checkIssuerSignature(raw, iss string) *assertionError {
	keys := e.issuers[iss]
	_, err := jwt.Parse(raw, func(*jwt.Token) (any, error) {
		if len(keys) == 0 {
			return nil, errors.New("no keys for issuer")
		}
		set := jwt.VerificationKeySet{}
		for _, k := range keys {
			set.Keys = append(set.Keys, k)
		}
		return set, nil
	}, jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
		jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
		return &assertionError{400, "invalid_client", 700024, "Client assertion is not within its valid time range."}
	default:
		return &assertionError{401, "invalid_client", 700027, fmt.Sprintf(
			"Client assertion failed signature validation. Assertion Issuer: '%s'.", iss)}
	}
}

func containsExact(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// loadIssuerKeys reads an issuer's PEM public key/certificate or JWKS file.
func loadIssuerKeys(is Issuer) ([]crypto.PublicKey, error) {
	if is.JWKSFile != "" {
		b, err := os.ReadFile(is.JWKSFile)
		if err != nil {
			return nil, err
		}
		return parseJWKS(b)
	}
	b, err := os.ReadFile(is.PublicKeyFile)
	if err != nil {
		return nil, err
	}
	var keys []crypto.PublicKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, c.PublicKey)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block", is.PublicKeyFile)
	}
	return keys, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

func parseJWKS(b []byte) ([]crypto.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	var keys []crypto.PublicKey
	for i, k := range set.Keys {
		dec := func(s string) (*big.Int, error) {
			raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
			if err != nil || len(raw) == 0 {
				return nil, fmt.Errorf("keys[%d]: bad base64url component", i)
			}
			return new(big.Int).SetBytes(raw), nil
		}
		switch k.Kty {
		case "RSA":
			n, err := dec(k.N)
			if err != nil {
				return nil, err
			}
			e, err := dec(k.E)
			if err != nil {
				return nil, err
			}
			if !e.IsInt64() || e.Int64() > 1<<31 {
				return nil, fmt.Errorf("keys[%d]: bad exponent", i)
			}
			keys = append(keys, &rsa.PublicKey{N: n, E: int(e.Int64())})
		case "EC":
			curve, err := curveByName(k.Crv)
			if err != nil {
				return nil, fmt.Errorf("keys[%d]: %w", i, err)
			}
			x, err := dec(k.X)
			if err != nil {
				return nil, err
			}
			y, err := dec(k.Y)
			if err != nil {
				return nil, err
			}
			size := (curve.Params().BitSize + 7) / 8
			raw := append([]byte{4}, append(x.FillBytes(make([]byte, size)), y.FillBytes(make([]byte, size))...)...)
			pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
			if err != nil {
				return nil, fmt.Errorf("keys[%d]: %w", i, err)
			}
			keys = append(keys, pub)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no RSA or EC keys")
	}
	return keys, nil
}

// jwkOf renders a public key as a JWK with base64url-raw components.
func jwkOf(pub crypto.PublicKey, kid string) jwk {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return jwk{Kty: "RSA", Kid: kid, N: b64url(k.N.Bytes()), E: b64url(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes()
		if err != nil || len(raw) != 1+2*size {
			return jwk{Kty: "EC", Kid: kid}
		}
		return jwk{Kty: "EC", Kid: kid, Crv: k.Curve.Params().Name, X: b64url(raw[1 : 1+size]), Y: b64url(raw[1+size:])}
	}
	return jwk{Kid: kid}
}
