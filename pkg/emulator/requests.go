package emulator

import (
	"net/http"
	"sync"
)

// RequestRecord is one request the emulator answered, with what a client identifies itself by. It
// never holds a header that carries a credential, a query string or a body.
type RequestRecord struct {
	Kind      string `json:"kind"` // "keyvault", "entra" or "managed-identity"
	Method    string `json:"method"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	UserAgent string `json:"userAgent"`
	Status    int    `json:"status"` // -1: the connection was dropped
}

// maxRequestRecords bounds the request record; older requests are dropped first.
const maxRequestRecords = 1000

type requestLog struct {
	mu   sync.Mutex
	recs []RequestRecord
}

func (l *requestLog) add(r RequestRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) == maxRequestRecords {
		copy(l.recs, l.recs[1:])
		l.recs = l.recs[:len(l.recs)-1]
	}
	l.recs = append(l.recs, r)
}

// Requests returns the most recent Key Vault, Entra ID and managed identity requests (at most
// 1000), oldest first.
func (e *Emulator) Requests() []RequestRecord {
	e.requests.mu.Lock()
	defer e.requests.mu.Unlock()
	return append([]RequestRecord(nil), e.requests.recs...)
}

// recordTLS records a request to a vault or to Entra ID.
func (e *Emulator) recordTLS(r *http.Request, status int) {
	kind := "entra"
	if _, _, ok := e.vaultHost(r.Host); ok {
		kind = "keyvault"
	}
	e.requests.add(RequestRecord{Kind: kind, Method: r.Method, Host: r.Host, Path: r.URL.Path, UserAgent: r.UserAgent(), Status: status})
}

// recordProxy records a managed identity request on the proxy port (tunnels are recorded by
// recordTLS, admin requests not at all).
func (e *Emulator) recordProxy(r *http.Request, target string, status int) {
	if r.URL.Path != "/metadata/identity/oauth2/token" && r.URL.Path != "/msi/token" {
		return
	}
	e.requests.add(RequestRecord{Kind: "managed-identity", Method: r.Method, Host: target, Path: r.URL.Path, UserAgent: r.UserAgent(), Status: status})
}
