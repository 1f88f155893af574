package provider

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
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
	if o.JSONKey != "" {
		member, err := jsonMember(value, o.JSONKey)
		if err != nil {
			return formatted{}, err
		}
		value = member
	}
	contents, err := decode(value, o.Encoding)
	if err != nil {
		return formatted{}, err
	}
	out.contents = contents
	return out, nil
}

func decode(value, encoding string) ([]byte, error) {
	switch encoding {
	case config.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, invalid("objectEncoding is base64 but the value is not standard base64; remove objectEncoding or fix the stored value")
		}
		return b, nil
	case config.EncodingHex:
		b, err := hex.DecodeString(value)
		if err != nil {
			return nil, invalid("objectEncoding is hex but the value is not hexadecimal; remove objectEncoding or fix the stored value")
		}
		return b, nil
	}
	return []byte(value), nil
}

// pkcs12ToPEM decodes Key Vault's base64 PKCS#12 (empty password) into the private key as PKCS#8
// PEM and the certificates as PEM, in stored order or ordered leaf to root.
func pkcs12ToPEM(value string, constructChain bool) (keyPEM, certPEM []byte, err error) {
	key, certs, err := decodePFX(value, constructChain)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, invalid("the certificate's private key cannot be written as PKCS#8 (%v)", err)
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
		return nil, nil, invalid("the certificate's secret is not base64 PKCS#12 as its content type says")
	}
	if err := checkPFXIterations(pfx); err != nil {
		return nil, nil, invalid("the certificate's PKCS#12 %v; re-import the certificate into Key Vault", err)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(pfx, "")
	if err != nil && strings.Contains(err.Error(), "private key missing") {
		return nil, nil, invalid("the certificate's PKCS#12 holds no private key (the certificate's key is not exportable); " +
			"mount it as objectType cert for the certificate alone, or make the key exportable")
	}
	if err != nil {
		return nil, nil, invalid("the certificate's PKCS#12 could not be decoded (%v)", err)
	}
	certs := append([]*x509.Certificate{leaf}, cas...)
	if constructChain {
		certs = orderChain(certs)
	}
	return key, certs, nil
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
		return nil, invalid("the public key cannot be written as PKIX (%v)", err)
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
