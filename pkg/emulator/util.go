package emulator

import "encoding/base64"

func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeB64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
