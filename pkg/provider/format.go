package provider

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// Content types of a certificate's secret.
const (
	contentTypePKCS12 = "application/x-pkcs12"
	contentTypePEM    = "application/x-pem-file"
)

// formatted is what one object version becomes: the file contents, and for a certificate's secret
// in PEM the key and certificate parts for --write-cert-and-key-in-separate-files.
type formatted struct {
	contents  []byte
	keyPEM    []byte
	certPEM   []byte
	splitable bool
}

// formatSecret renders a secret as Azure's provider does: a certificate's PKCS#12 secret becomes
// PEM (keys, then certificates) unless objectFormat is pfx; then objectEncoding is applied.
func formatSecret(s keyvault.Secret, o config.Object, constructChain bool) (formatted, error) {
	value := s.Value
	var out formatted
	if s.CertificateBacked && o.JSONKey != "" {
		return formatted{}, invalid("objectJSONKey is set but this secret holds a certificate (%s), not JSON; remove objectJSONKey", s.ContentType)
	}
	if s.CertificateBacked {
		switch s.ContentType {
		case contentTypePKCS12:
			if o.Format == config.FormatPFX {
				break // the stored base64 PKCS#12
			}
			keys, certs, err := pkcs12ToPEM(value, constructChain)
			if err != nil {
				return formatted{}, err
			}
			value = string(keys) + string(certs)
			out.keyPEM, out.certPEM, out.splitable = keys, certs, true
		case contentTypePEM:
			out.keyPEM, out.certPEM = splitPEM([]byte(value))
			out.splitable = true
		default:
			return formatted{}, invalid("the certificate's secret has content type %q; only %s and %s can be mounted",
				s.ContentType, contentTypePKCS12, contentTypePEM)
		}
	}
	switch o.Format {
	case config.FormatKey, config.FormatChain:
		if !s.CertificateBacked {
			return formatted{}, invalid("objectFormat %s needs a certificate's secret, but this is a plain secret; remove objectFormat or name a certificate", o.Format)
		}
		value = string(out.certPEM)
		if o.Format == config.FormatKey {
			if len(out.keyPEM) == 0 {
				return formatted{}, invalid("objectFormat key: the certificate's secret holds no private key (it is not exportable); mount its chain or make the key exportable")
			}
			value = string(out.keyPEM)
		}
		out.splitable = false
	}
	what := "the secret's value"
	if o.JSONKey != "" {
		member, err := jsonMember(value, o.JSONKey)
		if err != nil {
			return formatted{}, err
		}
		value, what = member, "the member objectJSONKey selects"
	}
	contents, err := decode(value, o.Encoding, what)
	if err != nil {
		return formatted{}, err
	}
	out.contents = contents
	return out, nil
}

// decode applies objectEncoding to value (what names it in an error). An error says where the
// value stops being base64 or hexadecimal by byte offset, never which character it found there:
// encoding/hex's InvalidByteError prints it, and it is a character of the secret.
func decode(value, encoding, what string) ([]byte, error) {
	switch encoding {
	case config.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, invalid("objectEncoding is base64 but the value is not standard base64 (%s); remove objectEncoding or fix the stored value", base64Problem(err, value, what))
		}
		return b, nil
	case config.EncodingHex:
		b, err := hex.DecodeString(value)
		if err != nil {
			return nil, invalid("objectEncoding is hex but the value is not hexadecimal (%s); remove objectEncoding or fix the stored value", hexProblem(value, what))
		}
		return b, nil
	}
	return []byte(value), nil
}

// base64Problem says where value stops being standard base64: base64.CorruptInputError is the
// byte offset where decoding failed (the start of the group of 4 when the padding is wrong).
func base64Problem(err error, value, what string) string {
	var at base64.CorruptInputError
	if !errors.As(err, &at) || int(at) > len(value) {
		return what + " cannot be decoded"
	}
	for i := int(at); i < len(value); i++ {
		if c := value[i]; !isBase64Byte(c) && c != '=' && c != '\r' && c != '\n' {
			return fmt.Sprintf("a character that is not base64 at byte %d of %s", i, what)
		}
	}
	return fmt.Sprintf("%s of %d bytes ends within a group of 4 characters, or its = padding is misplaced (from byte %d)", what, len(value), at)
}

func isBase64Byte(c byte) bool {
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'
}

// hexProblem says where value stops being hexadecimal, by offset.
func hexProblem(value, what string) string {
	for i := range len(value) {
		if c := value[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return fmt.Sprintf("a character that is not a hexadecimal digit at byte %d of %s", i, what)
		}
	}
	return fmt.Sprintf("%s has an odd number of digits, %d", what, len(value))
}

// pkcs12ToPEM decodes Key Vault's base64 PKCS#12 (empty password) into the private key as PKCS#8
// PEM and the certificates as PEM, in stored order or ordered leaf to root.
func pkcs12ToPEM(value string, constructChain bool) (keyPEM, certPEM []byte, err error) {
	key, certs, err := decodePFX(value, constructChain)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil { // the error names the key's Go type, never its bytes: still, only the type is said
		return nil, nil, invalid("the certificate's private key (%s) cannot be written as PKCS#8; re-import the certificate with an RSA, ECDSA or Ed25519 key", keyKind(key))
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, c := range certs {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return keyPEM, certPEM, nil
}

// decodePFX decodes Key Vault's base64 PKCS#12 (empty password) into its private key and its
// certificates, in stored order (DecodeChain keeps it) or ordered leaf to root.
func decodePFX(value string, constructChain bool) (crypto.PrivateKey, []*x509.Certificate, error) {
	pfx, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, nil, invalid("the certificate's secret is not base64 PKCS#12 as its content type says (%s)", base64Problem(err, value, "the secret's value"))
	}
	if err := checkPFXIterations(pfx); err != nil {
		return nil, nil, invalid("the certificate's PKCS#12: %s; re-import the certificate into Key Vault", err.Error())
	}
	key, leaf, cas, err := pkcs12.DecodeChain(pfx, "")
	if err != nil && strings.Contains(err.Error(), "private key missing") {
		return nil, nil, invalid("the certificate's PKCS#12 holds no private key (the certificate's key is not exportable); " +
			"mount it as objectType cert for the certificate alone, or make the key exportable")
	}
	if err != nil {
		return nil, nil, invalid("the certificate's PKCS#12 could not be decoded: %s; re-import the certificate into Key Vault", pkcs12Problem(err))
	}
	certs := append([]*x509.Certificate{leaf}, cas...)
	if constructChain {
		certs = orderChain(certs)
	}
	return key, certs, nil
}

// pkcs12Problem says what is wrong with a PKCS#12 file in words of our own. go-pkcs12's errors
// repeat parts of the file (an OID, an ASN.1 or x509 message, which quotes a certificate's
// names), and the file holds the private key, so its text is never repeated: only which of the
// file's parts failed.
func pkcs12Problem(err error) string {
	msg := err.Error()
	var notImplemented pkcs12.NotImplementedError
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword), errors.Is(err, pkcs12.ErrDecryption):
		return "it is protected by a password (Key Vault's own have none)"
	case errors.As(err, &notImplemented):
		return "it uses a structure or an algorithm the decoder does not support"
	case strings.Contains(msg, "x509:"):
		return "a certificate in it cannot be parsed"
	case strings.Contains(msg, "private key") || strings.Contains(msg, "PKCS#8") || strings.Contains(msg, "key bag"):
		return "its private key cannot be parsed"
	case strings.Contains(msg, "certificate missing"):
		return "it holds no certificate"
	case strings.Contains(msg, "trailing data"):
		return "data follows its end"
	}
	return "it is not a PKCS#12 file this provider can read"
}

// keyKind names a private key's type for an error.
func keyKind(key crypto.PrivateKey) string {
	switch key.(type) {
	case *rsa.PrivateKey:
		return "RSA"
	case *ecdsa.PrivateKey:
		return "ECDSA"
	case ed25519.PrivateKey:
		return "Ed25519"
	case nil:
		return "none"
	}
	return "of an unknown type"
}

// orderChain orders certificates leaf → intermediates → root by matching each certificate's
// authority key ID to its issuer's subject key ID. When the certificates do not form one
// complete chain, the stored order is kept (Azure's provider fails the mount instead).
func orderChain(certs []*x509.Certificate) []*x509.Certificate {
	parent := make([]int, len(certs))
	isParent := make([]bool, len(certs))
	for i, c := range certs {
		parent[i] = -1
		if len(c.AuthorityKeyId) == 0 {
			continue
		}
		for j, p := range certs {
			if i != j && bytes.Equal(c.AuthorityKeyId, p.SubjectKeyId) {
				parent[i], isParent[j] = j, true
				break
			}
		}
	}
	leaf := -1
	for i := range certs {
		if !isParent[i] {
			if leaf >= 0 {
				return certs // more than one leaf: not a single chain
			}
			leaf = i
		}
	}
	ordered := make([]*x509.Certificate, 0, len(certs))
	seen := make([]bool, len(certs))
	for i := leaf; i >= 0 && !seen[i]; i = parent[i] {
		seen[i] = true
		ordered = append(ordered, certs[i])
	}
	if len(ordered) != len(certs) {
		return certs // a gap or a cycle
	}
	return ordered
}

// splitPEM separates private key blocks from certificate blocks of a PEM document.
func splitPEM(data []byte) (keys, certs []byte) {
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			return keys, certs
		}
		if block.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(block)...)
		} else {
			keys = append(keys, pem.EncodeToMemory(block)...)
		}
		data = rest
	}
}

// formatKey writes a key's public part as a PKIX "PUBLIC KEY" PEM block.
func formatKey(k keyvault.Key) ([]byte, error) {
	var pub any
	switch k.Kty {
	case "RSA", "RSA-HSM":
		if len(k.N) == 0 || len(k.E) == 0 || len(k.E) > 4 {
			return nil, invalid("Key Vault returned an RSA key without a valid modulus and exponent")
		}
		e := new(big.Int).SetBytes(k.E)
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: int(e.Int64())}
	case "EC", "EC-HSM":
		curve, size := ecCurve(k.Crv)
		if curve == nil {
			return nil, invalid("key curve %q is not supported: use P-256, P-384 or P-521", k.Crv)
		}
		point := make([]byte, 1+2*size)
		point[0] = 4 // uncompressed
		if len(k.X) > size || len(k.Y) > size {
			return nil, invalid("Key Vault returned an EC key whose coordinates do not fit curve %s", k.Crv)
		}
		copy(point[1+size-len(k.X):], k.X)
		copy(point[1+2*size-len(k.Y):], k.Y)
		key, err := curve.NewPublicKey(point)
		if err != nil {
			return nil, invalid("Key Vault returned an EC key that is not a point on curve %s", k.Crv)
		}
		pub = key
	default:
		return nil, invalid("key type %q has no public key to write: only RSA, RSA-HSM, EC and EC-HSM keys can be mounted", k.Kty)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, invalid("the %s public key cannot be written as PKIX", k.Kty)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func ecCurve(crv string) (ecdh.Curve, int) {
	switch crv {
	case "P-256":
		return ecdh.P256(), 32
	case "P-384":
		return ecdh.P384(), 48
	case "P-521":
		return ecdh.P521(), 66
	}
	return nil, 0
}

// formatCert writes a certificate as one CERTIFICATE PEM block.
func formatCert(c keyvault.Certificate) ([]byte, error) {
	if len(c.DER) == 0 {
		return nil, errors.New("the certificate from Key Vault has no cer field")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}), nil
}

// invalid reports an object that cannot be served as the SecretProviderClass asks.
func invalid(format string, args ...any) error {
	return &keyvault.Error{Kind: keyvault.KindInvalidArgument, Detail: fmt.Sprintf(format, args...)}
}
