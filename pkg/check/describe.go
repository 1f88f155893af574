package check

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/akv-csi/provider/pkg/config"
)

// describe says what a file holds without any of its value: the certificates (the first one's
// subject, issuer and expiry, and how many follow), the public keys, that a private key is there,
// and otherwise only that it is a value. expires is the first certificate's expiry (RFC 3339).
func describe(contents []byte, o config.Object) (content, expires string) {
	var certs []*x509.Certificate
	var keys []string
	privateKeys := 0
	rest := contents
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		switch {
		case block.Type == "CERTIFICATE":
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				certs = append(certs, c)
			}
		case block.Type == "PUBLIC KEY":
			if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
				keys = append(keys, publicKeyKind(k)+" public key")
			}
		case strings.Contains(block.Type, "PRIVATE KEY"):
			privateKeys++
		}
	}
	var parts []string
	if privateKeys > 0 {
		parts = append(parts, "private key")
	}
	parts = append(parts, keys...)
	if len(certs) > 0 {
		leaf := certs[0]
		s := fmt.Sprintf("certificate %s (issuer %s), expires %s", leaf.Subject, leaf.Issuer, leaf.NotAfter.UTC().Format(time.DateOnly))
		if n := len(certs) - 1; n > 0 {
			s += fmt.Sprintf(" + %d CA certificate%s", n, plural(n))
		}
		parts = append(parts, s)
		expires = leaf.NotAfter.UTC().Format(time.RFC3339)
	}
	if len(parts) > 0 {
		return strings.Join(parts, " + "), expires
	}
	switch {
	case o.Format == config.FormatPFX && o.Encoding == config.EncodingBase64:
		return "PKCS#12 (binary, hidden)", ""
	case o.Format == config.FormatPFX:
		return "PKCS#12 (base64, hidden)", ""
	}
	return "value (hidden)", ""
}

func publicKeyKind(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
