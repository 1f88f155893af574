package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
)

// serveAdmin is the admin API on the proxy port:
//
//	GET  /admin/counters
//	POST /admin/counters/reset
//	GET  /admin/faults, PUT /admin/faults        (JSON Faults)
//	POST /admin/vaults/{vault}/secrets/{name}    {"value","contentType","tags","enabled","notBefore","expires"} -> {"version"}
//	POST /admin/vaults                           (JSON Vault, as in a seed) -> {"vault"}
//	POST /admin/vaults/{vault}/bulk-secrets      (JSON BulkSecrets) -> {"added"}
//	PUT  /admin/grants                           (JSON []Grant, replaces all)
//	POST /admin/grants                           (JSON []Grant, added to those in force)
//	GET  /admin/requests                         (JSON []RequestRecord, oldest first)
func (e *Emulator) serveAdmin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/admin/counters" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, e.Counters())
	case path == "/admin/counters/reset" && r.Method == http.MethodPost:
		e.ResetCounters()
		writeJSON(w, http.StatusOK, map[string]bool{"reset": true})
	case path == "/admin/requests" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, e.Requests())
	case path == "/admin/faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, e.Faults())
	case path == "/admin/faults" && r.Method == http.MethodPut:
		var f Faults
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			adminError(w, http.StatusBadRequest, "faults: "+err.Error())
			return
		}
		e.SetFaults(f)
		writeJSON(w, http.StatusOK, f)
	case path == "/admin/grants" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		var gs []Grant
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&gs); err != nil {
			adminError(w, http.StatusBadRequest, "grants: "+err.Error())
			return
		}
		if err := (&Seed{Grants: gs}).Validate(); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		if r.Method == http.MethodPost {
			e.AddGrants(gs...)
		} else {
			e.SetGrants(gs)
		}
		writeJSON(w, http.StatusOK, map[string]int{"grants": len(gs)})
	case path == "/admin/vaults" && r.Method == http.MethodPost:
		var v Vault
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			adminError(w, http.StatusBadRequest, "vault: "+err.Error())
			return
		}
		if err := e.AddVault(v); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"vault": v.Name})
	case strings.HasPrefix(path, "/admin/vaults/") && strings.HasSuffix(path, "/bulk-secrets") && r.Method == http.MethodPost:
		vault := strings.TrimSuffix(strings.TrimPrefix(path, "/admin/vaults/"), "/bulk-secrets")
		var b BulkSecrets
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			adminError(w, http.StatusBadRequest, "bulk-secrets: "+err.Error())
			return
		}
		n, err := e.AddSecrets(vault, b)
		if err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"added": n})
	case strings.HasPrefix(path, "/admin/vaults/") && r.Method == http.MethodPost:
		parts := strings.Split(strings.TrimPrefix(path, "/admin/vaults/"), "/")
		if len(parts) != 3 || parts[1] != "secrets" {
			adminError(w, http.StatusNotFound, "want POST /admin/vaults/{vault}/secrets/{name}")
			return
		}
		var body SecretVersion
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			adminError(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
		v, err := e.AddSecret(parts[0], parts[2], body)
		if err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"version": v})
	default:
		adminError(w, http.StatusNotFound, "unknown admin request "+r.Method+" "+r.URL.Path)
	}
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
