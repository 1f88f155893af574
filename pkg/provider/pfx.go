package provider

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha3"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"strings"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// passwordPFX renders a certificate's secret as a PKCS#12 encrypted with the password held by the
// secret o.PFXPasswordSecret (read through client, so every entry of the mount that names it
// shares one read), in o.PFXEncryption, then applies objectEncoding as for objectFormat pfx: the
// file is the PKCS#12 in base64, or its bytes with objectEncoding base64. The same certificate
// and password always give the same bytes, so a rotation rewrites nothing that did not change.
// Errors never hold the password.
func passwordPFX(ctx context.Context, client keyvault.Client, s keyvault.Secret, o config.Object, constructChain bool) ([]byte, error) {
	if !s.CertificateBacked {
		return nil, invalid("objectPFXPasswordSecret protects a certificate's PKCS#12, but this is a plain secret; name a certificate in objectName")
	}
	pw, err := client.GetSecret(ctx, o.PFXPasswordSecret, "")
	if err != nil {
		e := *keyvault.AsError(err)
		e.Detail = fmt.Sprintf("objectPFXPasswordSecret %q: %s", o.PFXPasswordSecret, e.Detail)
		if e.Absent() { // not this object's absence: the mount is misconfigured
			e.Kind, e.Status = keyvault.KindInvalidArgument, 0
			e.Detail += "; create that secret (with the password as its value) in the same vault, or fix objectPFXPasswordSecret"
		}
		return nil, &e
	}
	switch {
	case pw.CertificateBacked:
		return nil, invalid("objectPFXPasswordSecret %q is a certificate's secret, not a password; name a plain secret", o.PFXPasswordSecret)
	case pw.Value == "":
		return nil, invalid("objectPFXPasswordSecret %q is empty; store the password as its value", o.PFXPasswordSecret)
	}
	key, certs, err := certificateParts(s, constructChain)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, invalid("the certificate's secret holds no private key (the certificate's key is not exportable), so there is nothing to protect with a password; mount it as objectType cert")
	}
	enc := pkcs12.Modern2023
	if o.PFXEncryption == config.PFXLegacy {
		enc = pkcs12.LegacyDES
	}
	pfx, err := enc.WithRand(deterministic(pw.Value, s.Value)).Encode(key, certs[0], certs[1:], pw.Value)
	if err != nil {
		return nil, invalid("the PKCS#12 cannot be encrypted with the password of objectPFXPasswordSecret %q: %s", o.PFXPasswordSecret, pkcs12EncodeProblem(err))
	}
	return decode(base64.StdEncoding.EncodeToString(pfx), o.Encoding, "the PKCS#12")
}

// pkcs12EncodeProblem says why go-pkcs12 could not encode, in words of our own: its errors are
// about the password or the key, and neither may reach a message.
func pkcs12EncodeProblem(err error) string {
	if strings.Contains(err.Error(), "UCS-2") {
		return "the password has characters outside Unicode's Basic Multilingual Plane (such as emoji), which PKCS#12 cannot hold; use a password without them"
	}
	return "the encoder refused the certificate's key or certificates; re-import the certificate into Key Vault"
}

// deterministic is the randomness of one PKCS#12 encoding (its salts and IVs): a SHAKE256
// stream keyed by the password and the stored certificate, so equal inputs give equal files,
// and files of different certificates or passwords share no salt.
func deterministic(password, stored string) io.Reader {
	h := sha3.NewSHAKE256()
	for _, part := range []string{"akv-csi-provider pfx v1", password, stored} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		_, _ = h.Write(n[:])
		_, _ = h.Write([]byte(part))
	}
	return h
}

// certificateParts decodes a certificate's secret (PKCS#12 or PEM) into its private key (nil
// when it holds none) and its certificates, leaf first, then the others in the order
// --construct-pem-chain gives the pem output.
func certificateParts(s keyvault.Secret, constructChain bool) (crypto.PrivateKey, []*x509.Certificate, error) {
	switch s.ContentType {
	case contentTypePKCS12:
		return decodePFX(s.Value, constructChain)
	case contentTypePEM:
		return decodePEM(s.Value)
	}
	return nil, nil, invalid("the certificate's secret has content type %q; only %s and %s can be mounted", s.ContentType, contentTypePKCS12, contentTypePEM)
}

// decodePEM reads a PEM certificate's private key and certificates (stored order, the leaf
// moved first: the certificate of the key).
func decodePEM(value string) (crypto.PrivateKey, []*x509.Certificate, error) {
	var key crypto.PrivateKey
	var certs []*x509.Certificate
	rest := []byte(value)
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil { // its message may quote the block (x509: cannot parse URI "...")
				return nil, nil, invalid("PEM block %d of the secret (a CERTIFICATE) cannot be parsed as an X.509 certificate; re-import the certificate into Key Vault", n)
			}
			certs = append(certs, c)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			k, err := parsePrivateKey(block)
			if err != nil {
				return nil, nil, invalid("PEM block %d of the secret (a %s) cannot be parsed as a private key; re-import the certificate into Key Vault", n, block.Type)
			}
			key = k
		}
	}
	if len(certs) == 0 {
		return nil, nil, invalid("the PEM secret holds no certificate")
	}
	for i, c := range certs {
		if key != nil && samePublicKey(c.PublicKey, key) {
			certs[0], certs[i] = certs[i], certs[0]
			break
		}
	}
	return key, certs, nil
}

func parsePrivateKey(b *pem.Block) (crypto.PrivateKey, error) {
	switch b.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	}
	return x509.ParsePKCS8PrivateKey(b.Bytes)
}

func samePublicKey(pub any, key crypto.PrivateKey) bool {
	k, ok := key.(interface{ Public() crypto.PublicKey })
	if !ok {
		return false
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return p.Equal(k.Public())
	case *ecdsa.PublicKey:
		return p.Equal(k.Public())
	case ed25519.PublicKey:
		return p.Equal(k.Public())
	}
	return false
}
