package provider

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

func TestPasswordPFX(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	const pw = "pässwörd-€-Zr4"
	f := &fakeVault{secrets: map[string][]fakeVersion{"pw": {{version: "v1", value: pw}}, "empty": {{version: "v1", value: ""}}}}
	stored := keyvault.Secret{Value: base64.StdEncoding.EncodeToString(pfx(t, c.leafKey, c.leaf, c.root, c.intermediate)),
		ContentType: contentTypePKCS12, CertificateBacked: true}
	pemStored := keyvault.Secret{Value: c.keyPEM(t) + certsPEM(c.root, c.leaf, c.intermediate), ContentType: contentTypePEM, CertificateBacked: true}
	obj := func(mods ...func(*config.Object)) config.Object {
		return secretObject(append([]func(*config.Object){func(o *config.Object) {
			o.Format, o.PFXPasswordSecret, o.PFXEncryption = config.FormatPFX, "pw", config.PFXModern
		}}, mods...)...)
	}
	binary := func(o *config.Object) { o.Encoding = config.EncodingBase64 }
	for _, tt := range []struct {
		name      string
		secret    keyvault.Secret
		obj       config.Object
		construct bool
		wantCAs   []*x509.Certificate
	}{
		{"PKCS#12, modern, chain constructed", stored, obj(binary), true, []*x509.Certificate{c.intermediate, c.root}},
		{"PKCS#12, legacy, stored order", stored, obj(binary, func(o *config.Object) { o.PFXEncryption = config.PFXLegacy }), false, []*x509.Certificate{c.root, c.intermediate}},
		{"PEM, modern, leaf first", pemStored, obj(binary), true, []*x509.Certificate{c.root, c.intermediate}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := passwordPFX(context.Background(), f, tt.secret, tt.obj, tt.construct)
			if err != nil {
				t.Fatal(err)
			}
			key, leaf, cas, err := pkcs12.DecodeChain(got, pw)
			if err != nil {
				t.Fatalf("the PKCS#12 does not open with the password: %v", err)
			}
			if !leaf.Equal(c.leaf) || !samePublicKey(c.leafKey.Public(), key) || len(cas) != len(tt.wantCAs) {
				t.Fatalf("leaf %s, %d CAs", leaf.Subject, len(cas))
			}
			for i := range cas {
				if !cas[i].Equal(tt.wantCAs[i]) {
					t.Errorf("CA %d is %s, want %s", i, cas[i].Subject, tt.wantCAs[i].Subject)
				}
			}
			if _, _, _, err := pkcs12.DecodeChain(got, ""); err == nil {
				t.Error("the PKCS#12 opens without the password")
			}
			if again, _ := passwordPFX(context.Background(), f, tt.secret, tt.obj, tt.construct); !bytes.Equal(again, got) {
				t.Error("two renderings of the same certificate and password differ: every rotation would rewrite the file")
			}
		})
	}
	t.Run("base64 text without objectEncoding", func(t *testing.T) {
		t.Parallel()
		got, err := passwordPFX(context.Background(), f, stored, obj(), true)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(string(got))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := pkcs12.DecodeChain(raw, pw); err != nil {
			t.Error(err)
		}
	})

	locked := keyvault.Secret{Value: certsPEM(c.leaf), ContentType: contentTypePEM, CertificateBacked: true}
	for _, tt := range []struct {
		name   string
		secret keyvault.Secret
		obj    config.Object
		kind   keyvault.Kind
		want   string
	}{
		{"plain secret", keyvault.Secret{Value: "x"}, obj(), keyvault.KindInvalidArgument, "this is a plain secret"},
		{"password secret absent", stored, obj(func(o *config.Object) { o.PFXPasswordSecret = "nope" }), keyvault.KindInvalidArgument,
			`objectPFXPasswordSecret "nope": 404 Not Found (SecretNotFound); create that secret`},
		{"password empty", stored, obj(func(o *config.Object) { o.PFXPasswordSecret = "empty" }), keyvault.KindInvalidArgument, `objectPFXPasswordSecret "empty" is empty`},
		{"no private key", locked, obj(), keyvault.KindInvalidArgument, "holds no private key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := passwordPFX(context.Background(), f, tt.secret, tt.obj, true)
			if err == nil || keyvault.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v (kind %v), want kind %v containing %q", err, keyvault.KindOf(err), tt.kind, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("error holds the password: %v", err)
			}
		})
	}
}

// rawErrVault answers every read with err as the SDK would give it, unclassified.
type rawErrVault struct {
	fakeVault
	err error
}

func (v *rawErrVault) GetSecret(context.Context, string, string) (keyvault.Secret, error) {
	return keyvault.Secret{}, v.err
}

// TestPasswordPFXErrorsNeverRepeatTheValue: the errors of objectPFXPasswordSecret and of the
// certificate it protects name the field and the part that is wrong, never a byte of the
// certificate's secret or of the password: each input holds leakMarker.
func TestPasswordPFXErrorsNeverRepeatTheValue(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	f := &fakeVault{secrets: map[string][]fakeVersion{
		"pw":    {{version: "v1", value: "pw-" + leakMarker}},
		"emoji": {{version: "v1", value: "\U0001F511-" + leakMarker}},
	}}
	obj := func(password string) config.Object {
		return secretObject(func(o *config.Object) {
			o.Format, o.PFXPasswordSecret, o.PFXEncryption = config.FormatPFX, password, config.PFXModern
		})
	}
	stored := keyvault.Secret{Value: c.keyPEM(t) + certsPEM(c.leaf), ContentType: contentTypePEM, CertificateBacked: true}
	badCert := keyvault.Secret{Value: c.keyPEM(t) + pemOf("CERTIFICATE", badURICert(t, c)), ContentType: contentTypePEM, CertificateBacked: true}
	badKey := keyvault.Secret{Value: certsPEM(c.leaf) + pemOf("PRIVATE KEY", []byte("0\x10"+leakMarker)), ContentType: contentTypePEM, CertificateBacked: true}
	garbagePFX := keyvault.Secret{Value: base64.StdEncoding.EncodeToString([]byte(leakMarker)), ContentType: contentTypePKCS12, CertificateBacked: true}
	undecodable := &rawErrVault{err: errors.New(`unmarshalling type *azsecrets.Secret: invalid character '` + leakMarker + `' in string literal`)}
	for _, tt := range []struct {
		name   string
		client keyvault.Client
		secret keyvault.Secret
		obj    config.Object
		want   string
	}{
		{"a certificate x509 refuses", f, badCert, obj("pw"), "PEM block 2 of the secret (a CERTIFICATE) cannot be parsed as an X.509 certificate"},
		{"a private key that is not one", f, badKey, obj("pw"), "PEM block 2 of the secret (a PRIVATE KEY) cannot be parsed as a private key"},
		{"PKCS#12 garbage", f, garbagePFX, obj("pw"), "the certificate's PKCS#12 could not be decoded: it is not a PKCS#12 file this provider can read"},
		{"a password PKCS#12 cannot hold", f, stored, obj("emoji"),
			`the PKCS#12 cannot be encrypted with the password of objectPFXPasswordSecret "emoji": the password has characters outside Unicode's Basic Multilingual Plane`},
		{"a password secret whose response cannot be decoded", undecodable, stored, obj("pw"),
			`objectPFXPasswordSecret "pw": Key Vault's response could not be decoded as azsecrets.Secret; the decoder's message is not repeated`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := passwordPFX(context.Background(), tt.client, tt.secret, tt.obj, true)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "MARKER") {
				t.Errorf("the error repeats the value: %v", err)
			}
		})
	}
}
