package emulator

import (
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	recoveryLevel   = "Recoverable+Purgeable"
	recoverableDays = 90
	notFoundHelp    = " was not found in this key vault. If you recently deleted this %s you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
)

// kvRequest is one authenticated Key Vault request.
type kvRequest struct {
	w      http.ResponseWriter
	r      *http.Request
	vault  *vaultState
	base   string // https://<host as requested>
	client string
	tenant string
}

type kvAttributes struct {
	Enabled         bool   `json:"enabled"`
	NotBefore       int64  `json:"nbf,omitempty"`
	Expires         int64  `json:"exp,omitempty"`
	Created         int64  `json:"created"`
	Updated         int64  `json:"updated"`
	RecoverableDays int    `json:"recoverableDays"`
	RecoveryLevel   string `json:"recoveryLevel"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

func attrs(enabled bool, created time.Time) kvAttributes {
	return kvAttributes{Enabled: enabled, Created: created.Unix(), Updated: created.Unix(),
		RecoverableDays: recoverableDays, RecoveryLevel: recoveryLevel}
}

// secretAttrs adds a secret version's own nbf and exp.
func secretAttrs(sv *secretVer) kvAttributes {
	a := attrs(sv.enabled, sv.created)
	if sv.nbf != nil {
		a.NotBefore = sv.nbf.Unix()
	}
	if sv.exp != nil {
		a.Expires = sv.exp.Unix()
	}
	return a
}

func certAttrs(cv *certVersion) kvAttributes {
	a := attrs(true, cv.created)
	a.NotBefore, a.Expires = cv.leaf.NotBefore.Unix(), cv.leaf.NotAfter.Unix()
	return a
}

func kvError(w http.ResponseWriter, status int, code, msg, inner string) {
	body := map[string]any{"code": code, "message": msg}
	if inner != "" {
		body["innererror"] = map[string]string{"code": inner}
	}
	writeJSON(w, status, map[string]any{"error": body})
}

func (e *Emulator) serveKeyVault(w http.ResponseWriter, r *http.Request, vaultName string, cloud cloudInfo) {
	w.Header().Set("x-ms-keyvault-region", "local")
	w.Header().Set("x-ms-keyvault-service-version", "1.9.0.0")
	w.Header().Set("x-ms-request-id", pseudoGUID("req", strconv.FormatInt(time.Now().UnixNano(), 10)))
	fault, latency, retryAfter := e.takeKVFault()
	sleepCtx(r, latency)
	switch fault {
	case faultDrop:
		e.stats.update(func(c *Counters) { c.Dropped++ })
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		return
	case faultThrottle:
		e.stats.update(func(c *Counters) { c.Throttled++ })
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		kvError(w, http.StatusTooManyRequests, "Throttled",
			"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached", "")
		return
	case faultUnavailable:
		e.stats.update(func(c *Counters) { c.Unavailable++ })
		kvError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "The service is temporarily unavailable. Please retry later.", "")
		return
	}

	vs := e.vault(vaultName)
	if vs == nil {
		// The real service has no such host at all (DNS fails); a 404
		// with a clear code is the closest HTTP answer.
		kvError(w, http.StatusNotFound, "VaultNotFound",
			fmt.Sprintf("kv-emulator: vault %q does not exist (the real service would fail DNS resolution for %s)", vaultName, hostOnly(r.Host)), "")
		return
	}
	resource := "https://" + cloud.suffix
	if _, port, err := net.SplitHostPort(r.Host); err == nil && port != "" {
		resource += ":" + port
	}
	authority := cloud.authority
	if authority == "" {
		authority = e.URL()
	}
	challenge := func(msg string) {
		e.stats.update(func(c *Counters) { c.Challenges++ })
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s/%s", resource="%s"`, authority, vs.tenant, resource))
		kvError(w, http.StatusUnauthorized, "Unauthorized", msg, "")
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(raw) == "" {
		challenge("AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	tok, err := e.verifyAccessToken(strings.TrimSpace(raw))
	if err != nil {
		challenge(err.Error())
		return
	}
	if !strings.EqualFold(tok.tenant, vs.tenant) {
		challenge(fmt.Sprintf("AKV10032: Invalid issuer. Expected one of https://sts.windows.net/%s/, found https://sts.windows.net/%s/.", vs.tenant, tok.tenant))
		return
	}
	audOK := false
	for _, a := range tok.audiences {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), resource) {
			audOK = true
		}
	}
	if !audOK {
		challenge(fmt.Sprintf("AKV10022: Invalid audience. Expected %s, found: %s.", resource, strings.Join(tok.audiences, ",")))
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		kvError(w, http.StatusBadRequest, "BadParameter", "The 'api-version' query parameter is missing.", "")
		return
	}
	if r.Method != http.MethodGet {
		kvError(w, http.StatusMethodNotAllowed, "BadParameter", "kv-emulator serves only GET requests on the data plane.", "")
		return
	}
	kr := &kvRequest{w: w, r: r, vault: vs, base: "https://" + r.Host, client: tok.clientID, tenant: tok.tenant}
	e.routeKeyVault(kr)
}

var typeOfCollection = map[string]string{"secrets": "secret", "keys": "key", "certificates": "certificate"}

func (e *Emulator) routeKeyVault(kr *kvRequest) {
	parts := strings.Split(strings.TrimPrefix(kr.r.URL.Path, "/"), "/")
	if n := len(parts); n > 1 && parts[n-1] == "" {
		parts = parts[:n-1] // trailing slash: "/secrets/x/" is the latest version
	}
	typ, ok := typeOfCollection[parts[0]]
	if !ok || len(parts) > 3 {
		kvError(kr.w, http.StatusNotFound, "NotFound", "The requested resource "+kr.r.URL.Path+" was not found.", "")
		return
	}
	name, rest := "", ""
	if len(parts) > 1 {
		name = parts[1]
	}
	if len(parts) > 2 {
		rest = parts[2]
	}
	single := name != "" && rest != "versions" && rest != "policy"
	if !e.allowed(kr.client, kr.vault.name, typ, name) {
		e.forbidden(kr, typ, name, single)
		return
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	switch {
	case name == "":
		e.stats.update(func(c *Counters) { c.KeyVaultLists[typ]++ })
		e.listObjects(kr, typ)
	case rest == "versions":
		e.stats.update(func(c *Counters) { c.KeyVaultLists[typ]++ })
		e.listVersions(kr, typ, name)
	case rest == "policy" && typ == "certificate":
		e.stats.update(func(c *Counters) { c.KeyVaultGets[typ]++ })
		obj := kr.vault.certs[strings.ToLower(name)]
		if obj == nil {
			notFound(kr.w, typ, name)
			return
		}
		last, _ := latest(obj.versions)
		writeJSON(kr.w, http.StatusOK, e.certPolicy(kr, obj, last))
	default:
		e.stats.update(func(c *Counters) { c.KeyVaultGets[typ]++ })
		switch typ {
		case "secret":
			e.getSecret(kr, name, rest)
		case "key":
			e.getKey(kr, name, rest)
		default:
			e.getCertificate(kr, name, rest)
		}
	}
}

func (e *Emulator) forbidden(kr *kvRequest, typ, name string, single bool) {
	action := map[string]string{
		"secret":      "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
		"key":         "Microsoft.KeyVault/vaults/keys/read",
		"certificate": "Microsoft.KeyVault/vaults/certificates/read",
	}[typ]
	if single && typ == "secret" {
		action = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
	}
	resource := "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/kv-emulator/providers/microsoft.keyvault/vaults/" + kr.vault.name
	if name != "" {
		resource += "/" + typ + "s/" + name
	}
	msg := "Caller is not authorized to perform action on resource.\r\n" +
		"If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n" +
		fmt.Sprintf("Caller: appid=%s;oid=%s;iss=https://sts.windows.net/%s/\r\n", kr.client, pseudoGUID("oid", kr.client), kr.tenant) +
		fmt.Sprintf("Action: '%s'\r\n", action) +
		fmt.Sprintf("Resource: '%s'\r\n", resource) +
		"Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\n" +
		fmt.Sprintf("Vault: %s;location=local\r\n", kr.vault.name)
	kvError(kr.w, http.StatusForbidden, "Forbidden", msg, "ForbiddenByRbac")
}

func notFound(w http.ResponseWriter, typ, id string) {
	code := map[string]string{"secret": "SecretNotFound", "key": "KeyNotFound", "certificate": "CertificateNotFound"}[typ]
	kvError(w, http.StatusNotFound, code, fmt.Sprintf("A %s with (name/id) %s"+notFoundHelp, typ, id, typ), "")
}

func idOf(kr *kvRequest, coll, name, version string) string {
	id := kr.base + "/" + coll + "/" + name
	if version != "" {
		id += "/" + version
	}
	return id
}

func (e *Emulator) getSecret(kr *kvRequest, name, version string) {
	if obj := kr.vault.certs[strings.ToLower(name)]; obj != nil {
		cv, ok := findVersion(obj.versions, version, func(c *certVersion) string { return c.version })
		if !ok {
			notFound(kr.w, "secret", strings.TrimSuffix(name+"/"+version, "/"))
			return
		}
		writeJSON(kr.w, http.StatusOK, map[string]any{
			"value":       cv.secretValue,
			"id":          idOf(kr, "secrets", obj.name, cv.version),
			"contentType": cv.contentType,
			"attributes":  certAttrs(cv),
			"tags":        tagsOf(obj.spec.Tags),
			"kid":         idOf(kr, "keys", obj.name, cv.version),
			"managed":     true,
		})
		return
	}
	obj := kr.vault.secrets[strings.ToLower(name)]
	if obj == nil {
		notFound(kr.w, "secret", name)
		return
	}
	sv, ok := findVersion(obj.versions, version, func(s *secretVer) string { return s.version })
	if !ok {
		notFound(kr.w, "secret", name+"/"+version)
		return
	}
	if !sv.enabled {
		kvError(kr.w, http.StatusForbidden, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
		return
	}
	body := map[string]any{
		"value":      sv.value,
		"id":         idOf(kr, "secrets", obj.name, sv.version),
		"attributes": secretAttrs(sv),
		"tags":       tagsOf(sv.tags),
	}
	if sv.contentType != "" {
		body["contentType"] = sv.contentType
	}
	writeJSON(kr.w, http.StatusOK, body)
}

func tagsOf(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return t
}

func keyOps(kty string) []string {
	switch {
	case strings.HasPrefix(kty, "RSA"):
		return []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
	case strings.HasPrefix(kty, "EC"):
		return []string{"sign", "verify"}
	}
	return []string{"encrypt", "decrypt", "wrapKey", "unwrapKey"}
}

func (e *Emulator) getKey(kr *kvRequest, name, version string) {
	no := false
	if obj := kr.vault.certs[strings.ToLower(name)]; obj != nil {
		cv, ok := findVersion(obj.versions, version, func(c *certVersion) string { return c.version })
		if !ok {
			notFound(kr.w, "key", strings.TrimSuffix(name+"/"+version, "/"))
			return
		}
		k := jwkOf(cv.key.Public(), "")
		a := certAttrs(cv)
		a.Exportable = &no
		if cv.exportable {
			yes := true
			a.Exportable = &yes
		}
		writeJSON(kr.w, http.StatusOK, map[string]any{
			"key":        keyJSON(k, idOf(kr, "keys", obj.name, cv.version), k.Kty),
			"attributes": a,
			"tags":       tagsOf(obj.spec.Tags),
			"managed":    true,
		})
		return
	}
	obj := kr.vault.keys[strings.ToLower(name)]
	if obj == nil {
		notFound(kr.w, "key", name)
		return
	}
	kv, ok := findVersion(obj.versions, version, func(k *keyVer) string { return k.version })
	if !ok {
		notFound(kr.w, "key", name+"/"+version)
		return
	}
	a := attrs(true, kv.created)
	a.Exportable = &no
	var k jwk
	if kv.pub != nil {
		k = jwkOf(kv.pub, "")
	}
	writeJSON(kr.w, http.StatusOK, map[string]any{
		"key":        keyJSON(k, idOf(kr, "keys", obj.name, kv.version), obj.kty),
		"attributes": a,
		"tags":       tagsOf(obj.tags),
	})
}

// keyJSON is a JsonWebKey as Key Vault returns it: public components only.
func keyJSON(k jwk, kid, kty string) map[string]any {
	m := map[string]any{"kid": kid, "kty": kty, "key_ops": keyOps(kty)}
	for name, v := range map[string]string{"n": k.N, "e": k.E, "crv": k.Crv, "x": k.X, "y": k.Y} {
		if v != "" {
			m[name] = v
		}
	}
	return m
}

func x5t(cv *certVersion) string {
	sum := sha1.Sum(cv.leaf.Raw) //nolint:gosec // x5t is the SHA-1 thumbprint by definition
	return b64url(sum[:])
}

func (e *Emulator) getCertificate(kr *kvRequest, name, version string) {
	obj := kr.vault.certs[strings.ToLower(name)]
	if obj == nil {
		notFound(kr.w, "certificate", name)
		return
	}
	cv, ok := findVersion(obj.versions, version, func(c *certVersion) string { return c.version })
	if !ok {
		notFound(kr.w, "certificate", name+"/"+version)
		return
	}
	writeJSON(kr.w, http.StatusOK, map[string]any{
		"id":          idOf(kr, "certificates", obj.name, cv.version),
		"kid":         idOf(kr, "keys", obj.name, cv.version),
		"sid":         idOf(kr, "secrets", obj.name, cv.version),
		"x5t":         x5t(cv),
		"cer":         b64std(cv.leaf.Raw),
		"contentType": cv.contentType,
		"attributes":  certAttrs(cv),
		"policy":      e.certPolicy(kr, obj, cv),
		"tags":        tagsOf(obj.spec.Tags),
	})
}

func (e *Emulator) certPolicy(kr *kvRequest, obj *certObj, cv *certVersion) map[string]any {
	keyProps := map[string]any{"exportable": cv.exportable, "reuse_key": false}
	if pub, ok := cv.key.Public().(*rsa.PublicKey); ok {
		keyProps["kty"], keyProps["key_size"] = "RSA", pub.N.BitLen()
	} else {
		keyProps["kty"], keyProps["crv"] = "EC", "P-256"
	}
	created := cv.created.Unix()
	return map[string]any{
		"id":           idOf(kr, "certificates", obj.name, "policy"),
		"key_props":    keyProps,
		"secret_props": map[string]string{"contentType": cv.contentType},
		"x509_props": map[string]any{"subject": "CN=" + cv.leaf.Subject.CommonName, "sans": map[string]any{"dns_names": cv.leaf.DNSNames},
			"ekus": []string{"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}, "key_usage": []string{"digitalSignature", "keyEncipherment"}, "validity_months": 120},
		"lifetime_actions": []any{map[string]any{"trigger": map[string]int{"lifetime_percentage": 80}, "action": map[string]string{"action_type": "EmailContacts"}}},
		"issuer":           map[string]string{"name": "Unknown"},
		"attributes":       map[string]any{"enabled": true, "created": created, "updated": created},
	}
}

// listVersions lists an object's versions. Like the real service, an
// unknown name yields an empty list rather than a 404.
func (e *Emulator) listVersions(kr *kvRequest, typ, name string) {
	items := []any{}
	lname := strings.ToLower(name)
	if obj := kr.vault.certs[lname]; obj != nil {
		for _, cv := range obj.versions {
			items = append(items, e.certItem(kr, typ, obj, cv, true))
		}
	} else if obj := kr.vault.secrets[lname]; obj != nil && typ == "secret" {
		for _, sv := range obj.versions {
			items = append(items, secretItem(kr, obj.name, sv, true))
		}
	} else if obj := kr.vault.keys[lname]; obj != nil && typ == "key" {
		for _, kv := range obj.versions {
			items = append(items, keyItem(kr, obj, kv, true))
		}
	}
	e.page(kr, len(items), func(i int) any { return items[i] })
}

// listObjects lists all objects of a type, each as its latest version
// without the version in the id. Only the page's items are rendered.
func (e *Emulator) listObjects(kr *kvRequest, typ string) {
	names := kr.vault.sortedNames(typ)
	e.page(kr, len(names), func(i int) any {
		n := names[i]
		if obj := kr.vault.certs[n]; obj != nil {
			last, _ := latest(obj.versions)
			return e.certItem(kr, typ, obj, last, false)
		} else if obj := kr.vault.secrets[n]; obj != nil {
			last, _ := latest(obj.versions)
			return secretItem(kr, obj.name, last, false)
		}
		obj := kr.vault.keys[n]
		last, _ := latest(obj.versions)
		return keyItem(kr, obj, last, false)
	})
}

func versionIf(withVersion bool, v string) string {
	if withVersion {
		return v
	}
	return ""
}

func secretItem(kr *kvRequest, name string, sv *secretVer, withVersion bool) map[string]any {
	m := map[string]any{"id": idOf(kr, "secrets", name, versionIf(withVersion, sv.version)),
		"attributes": secretAttrs(sv), "tags": tagsOf(sv.tags)}
	if sv.contentType != "" {
		m["contentType"] = sv.contentType
	}
	return m
}

func keyItem(kr *kvRequest, obj *keyObj, kv *keyVer, withVersion bool) map[string]any {
	return map[string]any{"kid": idOf(kr, "keys", obj.name, versionIf(withVersion, kv.version)),
		"attributes": attrs(true, kv.created), "tags": tagsOf(obj.tags)}
}

// certItem renders a certificate version as a secret, key or certificate
// list item.
func (e *Emulator) certItem(kr *kvRequest, typ string, obj *certObj, cv *certVersion, withVersion bool) map[string]any {
	v, name, tags := versionIf(withVersion, cv.version), obj.name, tagsOf(obj.spec.Tags)
	switch typ {
	case "secret":
		return map[string]any{"id": idOf(kr, "secrets", name, v), "attributes": certAttrs(cv), "tags": tags,
			"contentType": cv.contentType, "managed": true}
	case "key":
		return map[string]any{"kid": idOf(kr, "keys", name, v), "attributes": certAttrs(cv), "tags": tags, "managed": true}
	}
	return map[string]any{"id": idOf(kr, "certificates", name, v), "x5t": x5t(cv), "attributes": certAttrs(cv), "tags": tags}
}

// page serves one page of a list of n items, rendering only its own. The
// nextLink is absolute, on the host the client used, and carries
// api-version, because the SDK follows it verbatim. The list faults apply
// here: an empty page that points at itself, or a nextLink on the decoy.
func (e *Emulator) page(kr *kvRequest, n int, item func(i int) any) {
	q := kr.r.URL.Query()
	size := 25
	if s := q.Get("maxresults"); s != "" {
		m, err := strconv.Atoi(s)
		if err != nil || m < 1 || m > 25 {
			kvError(kr.w, http.StatusBadRequest, "BadParameter", "maxresults must be an integer between 1 and 25.", "")
			return
		}
		size = m
	}
	if e.seed.PageSize > 0 {
		size = e.seed.PageSize
	}
	if kr.vault.pageSize > 0 {
		size = kr.vault.pageSize
	}
	start := 0
	if tok := q.Get("$skiptoken"); tok != "" {
		m, ok := parseSkipToken(tok)
		if !ok {
			kvError(kr.w, http.StatusBadRequest, "BadParameter", "The $skiptoken is invalid.", "")
			return
		}
		start = min(m, n)
	}
	fault := e.takeListFault()
	if fault == listEmpty {
		written := writeJSONSize(kr.w, http.StatusOK, map[string]any{"value": []any{}, "nextLink": kr.base + kr.r.URL.RequestURI()})
		e.stats.update(func(c *Counters) { c.KeyVaultListBytes += int64(written) })
		return
	}
	end := min(start+size, n)
	var next any // JSON null ends the list
	if end < n || fault == listForeign {
		nq := url.Values{}
		nq.Set("api-version", q.Get("api-version"))
		nq.Set("$skiptoken", skipToken(end))
		nq.Set("maxresults", strconv.Itoa(size))
		base := kr.base
		if fault == listForeign {
			base = e.DecoyURL()
		}
		next = base + kr.r.URL.Path + "?" + nq.Encode()
	}
	items := make([]any, 0, end-start)
	for i := start; i < end; i++ {
		items = append(items, item(i))
	}
	written := writeJSONSize(kr.w, http.StatusOK, map[string]any{"value": items, "nextLink": next})
	e.stats.update(func(c *Counters) { c.KeyVaultListBytes += int64(written) })
}

func skipToken(n int) string { return b64url([]byte("kv-emulator:" + strconv.Itoa(n))) }

func parseSkipToken(s string) (int, bool) {
	raw, err := decodeB64URL(s)
	if err != nil {
		return 0, false
	}
	num, ok := strings.CutPrefix(string(raw), "kv-emulator:")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil && n >= 0
}
