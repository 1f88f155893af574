package provider

import (
	"crypto/sha1" //nolint:gosec // the SHA-1 thumbprint is what Azure and Windows show; it identifies, it does not protect
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
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
	// Certificate describes the leaf certificate, for objectType cert only.
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

// formatMetadata renders the metadata document of one object version. der is the certificate of
// an objectType cert (nil otherwise).
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
