package provider

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
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
