package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// Secret content types of certificate-backed secrets.
const (
	ContentTypePKCS12 = "application/x-pkcs12"
	ContentTypePEM    = "application/x-pem-file"
)

// seedEpoch is the base of default created times and certificate validity,
// fixed so deterministic mode is reproducible.
var seedEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// source hands out byte streams for key material. Deterministic sources
// derive each stream from a label; others use crypto/rand.
type source struct{ deterministic bool }

// stream returns a reader for the labelled material. Since Go 1.26 the
// crypto packages ignore caller-supplied readers, so the deterministic paths
// below build keys from these bytes themselves.
func (s source) stream(label ...string) io.Reader {
	if !s.deterministic {
		return rand.Reader
	}
	return &hashStream{seed: sha256.Sum256([]byte(strings.Join(label, "\x00")))}
}

// version returns a 32-hex-character version id.
func (s source) version(label ...string) string {
	b := make([]byte, 16)
	_, _ = io.ReadFull(s.stream(append([]string{"version"}, label...)...), b)
	return hex.EncodeToString(b)
}

// hashStream is SHA-256 in counter mode: an endless, reproducible byte stream.
type hashStream struct {
	seed [32]byte
	ctr  uint64
	buf  []byte
}

func (h *hashStream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(h.buf) == 0 {
			var in [40]byte
			copy(in[:], h.seed[:])
			binary.BigEndian.PutUint64(in[32:], h.ctr)
			h.ctr++
			sum := sha256.Sum256(in[:])
			h.buf = sum[:]
		}
		c := copy(p[n:], h.buf)
		h.buf = h.buf[c:]
		n += c
	}
	return n, nil
}

func curveByName(name string) (elliptic.Curve, error) {
	switch name {
	case "", "P-256":
		return elliptic.P256(), nil
	case "P-384":
		return elliptic.P384(), nil
	case "P-521":
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("curve %q must be P-256, P-384 or P-521", name)
}

func (s source) ecKey(curve elliptic.Curve, label ...string) (*ecdsa.PrivateKey, error) {
	if !s.deterministic {
		return ecdsa.GenerateKey(curve, rand.Reader)
	}
	// Scalar = stream mod (N-1) + 1: in range and reproducible.
	n := curve.Params().N
	size := (n.BitLen() + 7) / 8
	b := make([]byte, size+8)
	_, _ = io.ReadFull(s.stream(label...), b)
	d := new(big.Int).SetBytes(b)
	d.Mod(d, new(big.Int).Sub(n, big.NewInt(1)))
	d.Add(d, big.NewInt(1))
	return ecdsa.ParseRawPrivateKey(curve, d.FillBytes(make([]byte, size)))
}

func (s source) rsaKey(bits int, label ...string) (*rsa.PrivateKey, error) {
	if !s.deterministic {
		return rsa.GenerateKey(rand.Reader, bits)
	}
	r := s.stream(label...)
	e := big.NewInt(65537)
	one := big.NewInt(1)
	for range 100 {
		p, err := seededPrime(r, bits-bits/2)
		if err != nil {
			return nil, err
		}
		q, err := seededPrime(r, bits/2)
		if err != nil {
			return nil, err
		}
		if p.Cmp(q) == 0 {
			continue
		}
		n := new(big.Int).Mul(p, q)
		if n.BitLen() != bits {
			continue
		}
		p1, q1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
		gcd := new(big.Int).GCD(nil, nil, p1, q1)
		lcm := new(big.Int).Div(new(big.Int).Mul(p1, q1), gcd)
		d := new(big.Int).ModInverse(e, lcm)
		if d == nil {
			continue
		}
		key := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 65537}, D: d, Primes: []*big.Int{p, q}}
		key.Precompute()
		if err := key.Validate(); err != nil {
			continue
		}
		return key, nil
	}
	return nil, errors.New("deterministic RSA key generation did not converge")
}

// smallPrimes speed up the prime search by discarding most candidates before
// the costly Miller-Rabin rounds.
var smallPrimes = func() []uint64 {
	var ps []uint64
	for c := uint64(3); c < 2000; c += 2 {
		prime := true
		for _, p := range ps {
			if p*p > c {
				break
			}
			if c%p == 0 {
				prime = false
				break
			}
		}
		if prime {
			ps = append(ps, c)
		}
	}
	return ps
}()

// seededPrime reads a bits-long odd number with the top two bits set (so a
// product of two has exactly 2*bits bits) and walks up to the next prime p
// with gcd(e, p-1) = 1.
func seededPrime(r io.Reader, bits int) (*big.Int, error) {
	b := make([]byte, (bits+7)/8)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	excess := uint(len(b)*8 - bits)
	b[0] &= byte(0xff >> excess)
	b[0] |= byte(0xc0 >> excess)
	if excess == 7 {
		b[1] |= 0x80
	}
	b[len(b)-1] |= 1
	p := new(big.Int).SetBytes(b)
	rem := make([]uint64, len(smallPrimes))
	m := new(big.Int)
	for i, sp := range smallPrimes {
		rem[i] = m.Mod(p, new(big.Int).SetUint64(sp)).Uint64()
	}
	for delta := uint64(0); delta < 1<<20; delta += 2 {
		ok := true
		for i, sp := range smallPrimes {
			if (rem[i]+delta)%sp == 0 {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		c := new(big.Int).Add(p, new(big.Int).SetUint64(delta))
		if c.BitLen() != bits {
			break
		}
		if new(big.Int).Mod(c, big.NewInt(65537)).Int64() == 1 {
			continue
		}
		if c.ProbablyPrime(20) {
			return c, nil
		}
	}
	return nil, errors.New("no prime found in search window")
}

// serial returns a positive 16-byte certificate serial number.
func (s source) serial(label ...string) *big.Int {
	b := make([]byte, 16)
	_, _ = io.ReadFull(s.stream(append([]string{"serial"}, label...)...), b)
	b[0] = b[0]&0x7f | 0x01
	return new(big.Int).SetBytes(b)
}

// deterministicSigner makes ECDSA signatures reproducible: a nil reader
// selects RFC 6979 signing, so certificates are byte-identical per seed.
type deterministicSigner struct{ crypto.Signer }

func (d deterministicSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return d.Signer.Sign(nil, digest, opts)
}

// issuer is a CA key and certificate.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (s source) newIssuer(cn string, parent *issuer, notBefore, notAfter time.Time, label ...string) (*issuer, error) {
	key, err := s.ecKey(elliptic.P256(), append([]string{"ca-key"}, label...)...)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          s.serial(append([]string{"ca"}, label...)...),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"kv-emulator"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	} else {
		tmpl.MaxPathLen = 1
	}
	der, err := x509.CreateCertificate(nil, tmpl, signerCert, key.Public(), deterministicSigner{signerKey})
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issuer{cert: cert, key: key}, nil
}

// certVersion is one generated certificate version.
type certVersion struct {
	version     string
	created     time.Time
	leaf        *x509.Certificate
	chain       []*x509.Certificate // stored order, leaf included
	key         crypto.Signer
	exportable  bool
	contentType string
	secretValue string
}

func (s source) newCertVersion(vault string, ca [2]*issuer, c Certificate, version string, created time.Time) (*certVersion, error) {
	label := []string{"cert", vault, c.Name, version}
	var key crypto.Signer
	var err error
	keyUsage := x509.KeyUsageDigitalSignature
	if c.KeyType == "EC" {
		key, err = s.ecKey(elliptic.P256(), label...)
	} else {
		key, err = s.rsaKey(2048, label...)
		keyUsage |= x509.KeyUsageKeyEncipherment
	}
	if err != nil {
		return nil, fmt.Errorf("certificate %q key: %w", c.Name, err)
	}
	cn := c.Subject
	if cn == "" {
		cn = c.Name
	}
	tmpl := &x509.Certificate{
		SerialNumber: s.serial(label...),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    created.Add(-time.Hour),
		NotAfter:     created.AddDate(10, 0, 0),
		KeyUsage:     keyUsage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if strings.Contains(cn, ".") {
		tmpl.DNSNames = []string{cn}
	}
	inter := ca[1]
	der, err := x509.CreateCertificate(nil, tmpl, inter.cert, key.Public(), deterministicSigner{inter.key})
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", c.Name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	order := c.Chain
	if len(order) == 0 {
		order = []string{"leaf", "intermediate", "root"}
	}
	cv := &certVersion{version: version, created: created, leaf: leaf, key: key,
		exportable: c.Exportable == nil || *c.Exportable, contentType: c.ContentType}
	if cv.contentType == "" {
		cv.contentType = ContentTypePKCS12
	}
	var others []*x509.Certificate
	for _, part := range order {
		switch part {
		case "leaf":
			cv.chain = append(cv.chain, leaf)
		case "intermediate":
			cv.chain = append(cv.chain, inter.cert)
			others = append(others, inter.cert)
		case "root":
			cv.chain = append(cv.chain, ca[0].cert)
			others = append(others, ca[0].cert)
		}
	}
	cv.secretValue, err = s.secretValue(cv, others, label)
	if err != nil {
		return nil, fmt.Errorf("certificate %q secret: %w", c.Name, err)
	}
	return cv, nil
}

// secretValue renders what GET /secrets/{cert} returns: base64 PKCS#12 with
// an empty password, or PEM (PKCS#8 key, then certificates in stored order).
// A non-exportable certificate's value carries no private key.
func (s source) secretValue(cv *certVersion, others []*x509.Certificate, label []string) (string, error) {
	if cv.contentType == ContentTypePEM {
		var b strings.Builder
		if cv.exportable {
			der, err := x509.MarshalPKCS8PrivateKey(cv.key)
			if err != nil {
				return "", err
			}
			b.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}
		for _, c := range cv.chain {
			b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		}
		return b.String(), nil
	}
	// Legacy 3DES/SHA-1 is what Key Vault itself exports; the seeded reader
	// fixes salts and IVs in deterministic mode.
	enc := pkcs12.LegacyDES.WithRand(s.stream(append([]string{"pkcs12"}, label...)...))
	var pfx []byte
	var err error
	if cv.exportable {
		pfx, err = enc.Encode(cv.key, cv.leaf, others, "")
	} else {
		pfx, err = enc.EncodeTrustStore(cv.chain, "")
	}
	if err != nil {
		return "", err
	}
	return b64std(pfx), nil
}
