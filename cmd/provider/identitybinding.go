package main

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// validateTokenProxyURL applies the rules azidentity applies to an identity binding token proxy:
// https, a host, and no user info, query or fragment.
func validateTokenProxyURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("--token-proxy-url %q: %w", s, err)
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("--token-proxy-url %q must be an https URL", s)
	case u.Host == "":
		return fmt.Errorf("--token-proxy-url %q has no host", s)
	case u.User != nil:
		return fmt.Errorf("--token-proxy-url %q must not contain user info", s)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("--token-proxy-url %q must not contain a query", s)
	case u.Fragment != "" || u.RawFragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("--token-proxy-url %q must not contain a fragment", s)
	}
	return nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validateSNIName accepts a DNS host name (RFC 1123 labels, at most 253 characters, no trailing
// dot), which is what TLS server name indication carries; an IP address is not one.
func validateSNIName(s string) error {
	bad := func(why string) error { return fmt.Errorf("--sni-name %q is not a DNS name: %s", s, why) }
	if len(s) > 253 {
		return bad("longer than 253 characters")
	}
	if net.ParseIP(s) != nil {
		return bad("it is an IP address")
	}
	for _, label := range strings.Split(strings.ToLower(s), ".") {
		if !dnsLabel.MatchString(label) {
			return bad(fmt.Sprintf("label %q must be 1-63 letters, digits or '-', not starting or ending with '-'", label))
		}
	}
	return nil
}
