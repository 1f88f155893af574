package emulator

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// serveEntra serves the Entra ID endpoints MSAL uses, on any non-vault host
// (127.0.0.1:PORT directly, or login.microsoftonline.com and friends
// through the proxy). URLs in responses use the request's own host, since
// MSAL requires the issuer host to equal the authority host.
func (e *Emulator) serveEntra(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	tenant := parts[0]
	switch {
	case len(parts) == 3 && parts[0] == "common" && parts[1] == "discovery" && parts[2] == "instance":
		e.serveInstanceDiscovery(w, r)
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration",
		len(parts) == 3 && parts[1] == ".well-known" && parts[2] == "openid-configuration":
		e.stats.update(func(c *Counters) { c.DiscoveryRequests++ })
		if !e.knownTenant(tenant) {
			aadError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
			return
		}
		base := "https://" + r.Host + "/" + tenant
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                base + "/v2.0",
			"token_endpoint":                        base + "/oauth2/v2.0/token",
			"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
			"jwks_uri":                              base + "/discovery/v2.0/keys",
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
			"tenant_region_scope":                   "WW",
			"cloud_instance_name":                   hostOnly(r.Host),
		})
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token":
		e.serveToken(w, r, tenant)
	case len(parts) == 4 && parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys":
		writeJSON(w, http.StatusOK, map[string]any{"keys": []jwk{jwkOf(&e.tokenKey.PublicKey, e.tokenKid)}})
	default:
		aadError(w, http.StatusNotFound, "not_found", 900561, "kv-emulator does not serve "+r.URL.Path+".")
	}
}

func (e *Emulator) knownTenant(t string) bool {
	switch strings.ToLower(t) {
	case "common", "organizations":
		return true
	}
	return e.tenants[strings.ToLower(t)]
}

// serveInstanceDiscovery answers MSAL's AAD instance discovery so the
// public-cloud route works without DisableInstanceDiscovery.
func (e *Emulator) serveInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	e.stats.update(func(c *Counters) { c.DiscoveryRequests++ })
	tenant := "common"
	if u, err := url.Parse(r.URL.Query().Get("authorization_endpoint")); err == nil {
		if seg := strings.Split(strings.Trim(u.Path, "/"), "/"); seg[0] != "" {
			tenant = seg[0]
		}
	}
	host := r.Host
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + host + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []any{map[string]any{
			"preferred_network": host, "preferred_cache": host, "aliases": []string{host},
		}},
	})
}

// aadError writes an Entra ID token error in the service's shape.
func aadError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	now := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	trace := pseudoGUID("trace", now, desc)
	corr := pseudoGUID("corr", now, desc)
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", aadsts, desc, trace, corr, now),
		"error_codes":       []int{aadsts},
		"timestamp":         now,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         "https://login.microsoftonline.com/error?code=" + strconv.Itoa(aadsts),
	})
}

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" //nolint:gosec // an OAuth type name, not a credential

// acceptTokenRequest is the start of every token endpoint: a POSTed form, counted, with the
// injected token faults applied and the client credentials grant required. It answers the
// request itself and returns ok=false when the request goes no further.
func (e *Emulator) acceptTokenRequest(w http.ResponseWriter, r *http.Request) (f url.Values, ok bool) {
	if r.Method != http.MethodPost {
		aadError(w, http.StatusBadRequest, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must be a form.")
		return nil, false
	}
	f = r.PostForm
	clientID := f.Get("client_id")
	e.stats.update(func(c *Counters) {
		c.TokenRequests++
		if clientID != "" {
			c.TokenRequestsByClient[clientID]++
		}
	})
	fail, latency := e.takeTokenFault()
	sleepCtx(r, latency)
	if fail {
		aadError(w, http.StatusInternalServerError, "server_error", 50000, "There was an error issuing a token or an issue with our sign-in service.")
		return f, false
	}
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return f, false
	}
	return f, true
}

func (e *Emulator) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	f, ok := e.acceptTokenRequest(w, r)
	if !ok {
		return
	}
	clientID := f.Get("client_id")
	sp := e.sps[strings.ToLower(clientID)]
	if sp == nil || !strings.EqualFold(sp.TenantID, tenant) {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
			clientID, tenant))
		return
	}
	aud, ok := audienceOf(f.Get("scope"))
	if !ok {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
			"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", f.Get("scope")))
		return
	}
	switch {
	case f.Get("client_secret") != "":
		if !secretMatches(sp.Secrets, f.Get("client_secret")) {
			aadError(w, http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", sp.ClientID))
			return
		}
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != jwtBearer {
			aadError(w, http.StatusBadRequest, "invalid_request", 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
			return
		}
		if ae := e.checkAssertion(sp, f.Get("client_assertion")); ae != nil {
			aadError(w, ae.status, ae.code, ae.aadsts, ae.msg)
			return
		}
	default:
		aadError(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	e.writeAccessToken(w, sp.TenantID, sp.ClientID, aud)
}

// writeAccessToken answers a token request with an access token of the identity for aud.
func (e *Emulator) writeAccessToken(w http.ResponseWriter, tenant, clientID, aud string) {
	tok, _, err := e.issueAccessToken(tenant, clientID, aud, time.Now())
	if err != nil {
		aadError(w, http.StatusInternalServerError, "server_error", 50000, "kv-emulator could not sign the token.")
		return
	}
	secs := int(tokenLifetime / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok})
}

// audienceOf returns the resource of the first "<resource>/.default" scope;
// MSAL adds openid, offline_access and profile, which are ignored.
func audienceOf(scope string) (string, bool) {
	for _, s := range strings.Fields(scope) {
		if aud, ok := strings.CutSuffix(s, "/.default"); ok && aud != "" {
			return aud, true
		}
	}
	return "", false
}

func secretMatches(secrets []string, got string) bool {
	ok := false
	for _, s := range secrets {
		if subtle.ConstantTimeCompare([]byte(s), []byte(got)) == 1 {
			ok = true
		}
	}
	return ok
}

// serveIMDS is the Azure Instance Metadata Service token endpoint.
func (e *Emulator) serveIMDS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "Only GET is supported"})
		return
	}
	if r.Header.Get("Metadata") != "true" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request_102", "error_description": "Required metadata header not specified"})
		return
	}
	e.serveMIToken(w, r)
}

// serveAppService is the App Service managed identity endpoint
// (IDENTITY_ENDPOINT + IDENTITY_HEADER).
func (e *Emulator) serveAppService(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "Only GET is supported"})
		return
	}
	got := r.Header.Get("X-IDENTITY-HEADER")
	if subtle.ConstantTimeCompare([]byte(got), []byte(e.seed.identityHeader())) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized_client",
			"error_description": "X-IDENTITY-HEADER is missing or does not match IDENTITY_HEADER"})
		return
	}
	e.serveMIToken(w, r)
}

func (e *Emulator) serveMIToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := ""
	for _, k := range []string{"client_id", "clientid", "object_id", "principal_id", "msi_res_id", "mi_res_id"} {
		if v := q.Get(k); v != "" {
			id = v
			break
		}
	}
	mi := e.systemMI
	if id != "" {
		mi = e.miByID[strings.ToLower(id)]
	}
	key := id // count by client ID when the identity is known
	if mi != nil {
		key = mi.ClientID
	}
	e.stats.update(func(c *Counters) {
		c.TokenRequests++
		if key != "" {
			c.TokenRequestsByClient[key]++
		}
	})
	fail, latency := e.takeTokenFault()
	sleepCtx(r, latency)
	if fail {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "unknown", "error_description": "kv-emulator injected token failure"})
		return
	}
	resource := q.Get("resource")
	if resource == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Required audience parameter not specified"})
		return
	}
	if mi == nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Identity not found"})
		return
	}
	now := time.Now()
	tok, exp, err := e.issueAccessToken(mi.TenantID, mi.ClientID, resource, now)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "unknown", "error_description": "kv-emulator could not sign the token"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token":   tok,
		"refresh_token":  "",
		"expires_in":     strconv.Itoa(int(tokenLifetime / time.Second)),
		"expires_on":     strconv.FormatInt(exp.Unix(), 10),
		"ext_expires_in": strconv.Itoa(int(tokenLifetime / time.Second)),
		"not_before":     strconv.FormatInt(now.Unix(), 10),
		"resource":       resource,
		"token_type":     "Bearer",
		"client_id":      mi.ClientID,
	})
}
