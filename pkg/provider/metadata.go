package provider

import (
	"crypto/sha1" //nolint:gosec // the SHA-1 thumbprint is what Azure and Windows show; it identifies, it does not protect
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"strings"
	"time"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// metadata is the document objectFormat: metadata writes: an object version's properties, never
// its value or key material. Fields are written in this order, every one of them always (null when
// Key Vault did not send it), so a rotation rewrites the file only when something in it changed.
// README's "Metadata" section documents it; a test pins the field order.
type metadata struct {
	Name        string            `json:"name"`
	Type        config.ObjectType `json:"type"`
	Vault       string            `json:"vault"`
	Version     string            `json:"version"`
	ContentType *string           `json:"contentType"`
	Enabled     bool              `json:"enabled"`
	Created     *string           `json:"created"`
	Updated     *string           `json:"updated"`
	NotBefore   *string           `json:"notBefore"`
	Expires     *string           `json:"expires"`
	Tags        map[string]string `json:"tags"` // encoding/json sorts the keys
	// Certificate describes the leaf certificate of objectType cert and of a certificate's secret.
	Certificate *certMetadata `json:"certificate,omitempty"`
}

type certMetadata struct {
	Subject          string `json:"subject"`
	Issuer           string `json:"issuer"`
	SerialNumber     string `json:"serialNumber"`     // lower-case hex
	SHA1Thumbprint   string `json:"sha1Thumbprint"`   // upper-case hex, as Azure shows it
	SHA256Thumbprint string `json:"sha256Thumbprint"` // upper-case hex
	NotBefore        string `json:"notBefore"`
	NotAfter         string `json:"notAfter"`
}

// formatMetadata renders the metadata document of one object version. der is the leaf certificate
// of an objectType cert or a certificate's secret (nil otherwise).
func formatMetadata(o config.Object, vault, version, contentType string, a keyvault.Attributes, der []byte) ([]byte, error) {
	m := metadata{
		Name: o.Name, Type: o.Type, Vault: vault, Version: version,
		Enabled: a.Enabled == nil || *a.Enabled,
		Created: timeOf(a.Created), Updated: timeOf(a.Updated), NotBefore: timeOf(a.NotBefore), Expires: timeOf(a.Expires),
		Tags: a.Tags,
	}
	if contentType != "" {
		m.ContentType = &contentType
	}
	if m.Tags == nil {
		m.Tags = map[string]string{}
	}
	if der != nil {
		c, err := x509.ParseCertificate(der)
		if err != nil { // its message may quote the certificate (x509: cannot parse URI "...")
			return nil, invalid("objectFormat metadata: the certificate from Key Vault (%d bytes of DER) cannot be parsed as an X.509 certificate; re-import it", len(der))
		}
		sha1Sum := sha1.Sum(c.Raw) //nolint:gosec // a thumbprint
		sha256Sum := sha256.Sum256(c.Raw)
		m.Certificate = &certMetadata{
			Subject: c.Subject.String(), Issuer: c.Issuer.String(), SerialNumber: c.SerialNumber.Text(16),
			SHA1Thumbprint: strings.ToUpper(hex.EncodeToString(sha1Sum[:])), SHA256Thumbprint: strings.ToUpper(hex.EncodeToString(sha256Sum[:])),
			NotBefore: c.NotBefore.UTC().Format(time.RFC3339), NotAfter: c.NotAfter.UTC().Format(time.RFC3339),
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil { // strings and a map of strings never fail; the error would quote them
		return nil, invalid("objectFormat metadata: the document cannot be written as JSON")
	}
	return append(b, '\n'), nil
}

func timeOf(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// secretLeaf returns the DER of the certificate a certificate's secret holds the key of: the one
// Key Vault returns as the certificate's cer, so that objectFormat metadata describes it alike
// for objectType secret and cert.
func secretLeaf(s keyvault.Secret) ([]byte, error) {
	switch s.ContentType {
	case contentTypePKCS12:
		_, certs, err := decodePFX(s.Value, false) // the leaf (the key's certificate) first
		if err != nil {
			return nil, err
		}
		return certs[0].Raw, nil
	case contentTypePEM:
		_, certPEM := splitPEM([]byte(s.Value))
		var certs []*x509.Certificate
		for block, rest := pem.Decode(certPEM); block != nil; block, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil { // its message may quote the certificate
				return nil, invalid("objectFormat metadata: a certificate of the certificate's PEM secret cannot be parsed as X.509; re-import it")
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return nil, invalid("objectFormat metadata: the certificate's PEM secret holds no certificate; re-import it")
		}
		return orderChain(certs)[0].Raw, nil
	}
	return nil, invalid("objectFormat metadata: the certificate's secret has content type %q; only %s and %s can be read", s.ContentType, contentTypePKCS12, contentTypePEM)
}
