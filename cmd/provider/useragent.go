package main

import (
	"fmt"
	"net/http"
	"unicode"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// validateUserAgent refuses what cannot go into a User-Agent header value.
func validateUserAgent(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("--custom-user-agent %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("--custom-user-agent %q contains the control character %U; use printable characters only", s, r)
		}
	}
	return nil
}

// userAgentPolicy appends " <suffix>" to the User-Agent the SDK's telemetry policy set. It is a
// per-call policy (it runs once per call, after telemetry and before retries), so every Key
// Vault, Entra ID, managed identity and token proxy request carries it exactly once.
type userAgentPolicy struct{ suffix string }

func (p userAgentPolicy) Do(req *policy.Request) (*http.Response, error) {
	h := req.Raw().Header
	if ua := h.Get("User-Agent"); ua != "" {
		h.Set("User-Agent", ua+" "+p.suffix)
	} else {
		h.Set("User-Agent", p.suffix)
	}
	return req.Next()
}
