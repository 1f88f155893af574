package provider

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
)

// maxPFXIterations bounds the key-derivation iteration counts a PKCS#12 file may ask for. The
// decoder runs each count as given (twice on a wrong MAC), so a file written by whoever may set a
// secret could otherwise cost minutes of CPU per mount. Key Vault writes 2048 (legacy) and
// OpenSSL 3 writes 2048 (PBKDF2) or 10000; 100000 leaves room for stricter policies.
const maxPFXIterations = 100000

// PKCS#12 structures, as far as they carry algorithm parameters (RFC 7292, RFC 5652).
type pfxPDU struct {
	Version  int
	AuthSafe pfxContentInfo
	MacData  pfxMacData `asn1:"optional"`
}

type pfxContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type pfxMacData struct {
	Mac        asn1.RawValue
	MacSalt    []byte
	Iterations asn1.RawValue `asn1:"optional"`
}

type pfxEncryptedData struct {
	Version              int
	EncryptedContentInfo struct {
		ContentType                asn1.ObjectIdentifier
		ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
		EncryptedContent           asn1.RawValue `asn1:"tag:0,optional"`
	}
}

type pfxSafeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue `asn1:"tag:0,explicit"`
	Attributes asn1.RawValue `asn1:"optional"`
}

type pfxEncryptedPrivateKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Data      []byte
}

var (
	oidDataContent          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedDataContent = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidShroudedKeyBag       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
)

// checkPFXIterations refuses a PKCS#12 file whose MAC or encryption asks for more than
// maxPFXIterations key-derivation rounds, reading only its outer structure.
func checkPFXIterations(der []byte) error {
	var pfx pfxPDU
	if _, err := asn1.Unmarshal(der, &pfx); err != nil {
		return nil // not PKCS#12: the decoder says so
	}
	if len(pfx.MacData.Iterations.Bytes) > 0 {
		if err := checkIntegers(pfx.MacData.Iterations.FullBytes); err != nil {
			return fmt.Errorf("its MAC %w", err)
		}
	}
	if !pfx.AuthSafe.ContentType.Equal(oidDataContent) {
		return nil
	}
	var authSafe []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &authSafe); err != nil {
		return nil
	}
	var contents []pfxContentInfo
	if _, err := asn1.Unmarshal(authSafe, &contents); err != nil {
		return nil
	}
	for _, ci := range contents {
		switch {
		case ci.ContentType.Equal(oidEncryptedDataContent):
			var ed pfxEncryptedData
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err != nil {
				continue
			}
			if err := checkIntegers(ed.EncryptedContentInfo.ContentEncryptionAlgorithm.Parameters.FullBytes); err != nil {
				return fmt.Errorf("its certificate encryption %w", err)
			}
		case ci.ContentType.Equal(oidDataContent):
			var data []byte
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &data); err != nil {
				continue
			}
			var bags []pfxSafeBag
			if _, err := asn1.Unmarshal(data, &bags); err != nil {
				continue
			}
			for _, bag := range bags {
				if !bag.ID.Equal(oidShroudedKeyBag) {
					continue
				}
				var info pfxEncryptedPrivateKeyInfo
				if _, err := asn1.Unmarshal(bag.Value.Bytes, &info); err != nil {
					continue
				}
				if err := checkIntegers(info.Algorithm.Parameters.FullBytes); err != nil {
					return fmt.Errorf("its key encryption %w", err)
				}
			}
		}
	}
	return nil
}

// checkIntegers refuses any INTEGER above maxPFXIterations in DER algorithm parameters (salts,
// IVs and OIDs are not integers; the only integers there are iteration counts and key lengths).
func checkIntegers(der []byte) error { return checkIntegersAt(der, 0) }

func checkIntegersAt(der []byte, depth int) error {
	for rest := der; len(rest) > 0; {
		var v asn1.RawValue
		next, err := asn1.Unmarshal(rest, &v)
		if err != nil {
			return nil
		}
		rest = next
		switch {
		case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagInteger:
			if n := new(big.Int).SetBytes(v.Bytes); len(v.Bytes) > 0 && v.Bytes[0]&0x80 == 0 && n.Cmp(big.NewInt(maxPFXIterations)) > 0 {
				// The count is a field of the secret: say it only when it can be a count (32 bits);
				// a longer integer is any bytes at all, and its digits would spell them.
				if n.BitLen() > 32 {
					return fmt.Errorf("asks for an iteration count of %d bytes, more than the %d iterations allowed", len(v.Bytes), maxPFXIterations)
				}
				return fmt.Errorf("asks for %s key-derivation iterations, more than the %d allowed", n, maxPFXIterations)
			}
		case v.IsCompound && depth < 8:
			if err := checkIntegersAt(v.Bytes, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
