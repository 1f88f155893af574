package emulator

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// serveTLS handles the TLS port and tunnelled CONNECT traffic: a Host under
// a Key Vault suffix is a vault, anything else is Entra ID.
func (e *Emulator) serveTLS(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		e.logf("kv-emulator: %s https://%s%s -> %d", r.Method, r.Host, r.URL.Path, rec.code())
		e.recordTLS(r, rec.code())
	}()
	if name, cloud, ok := e.vaultHost(r.Host); ok {
		e.serveKeyVault(rec, r, name, cloud)
		return
	}
	e.serveEntra(rec, r)
}

// serveProxy handles the plain-HTTP port: CONNECT tunnels to emulated
// hosts, absolute-form IMDS requests, and origin-form managed identity and
// admin requests. It never dials out.
func (e *Emulator) serveProxy(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	target := r.Host
	if r.URL.IsAbs() {
		target = r.URL.Host
	}
	defer func() {
		e.logf("kv-emulator: proxy %s %s%s -> %d", r.Method, target, r.URL.Path, rec.code())
		e.recordProxy(r, target, rec.code())
	}()
	if r.Method == http.MethodConnect {
		e.serveConnect(rec, r)
		return
	}
	if r.URL.IsAbs() && !strings.EqualFold(r.URL.Host, e.proxyLn.Addr().String()) {
		if hostOnly(r.URL.Host) == "169.254.169.254" && r.URL.Path == "/metadata/identity/oauth2/token" {
			e.serveIMDS(rec, r)
			return
		}
		refuse(rec, r.URL.Host)
		return
	}
	switch {
	case r.URL.Path == "/metadata/identity/oauth2/token":
		e.serveIMDS(rec, r)
	case r.URL.Path == "/msi/token":
		e.serveAppService(rec, r)
	case strings.HasPrefix(r.URL.Path, "/admin/"):
		e.serveAdmin(rec, r)
	default:
		http.Error(rec, "kv-emulator: unknown path "+r.URL.Path, http.StatusNotFound)
	}
}

func refuse(w http.ResponseWriter, host string) {
	http.Error(w, "kv-emulator refuses to forward to "+host, http.StatusForbidden)
}

// serveConnect terminates TLS for an emulated host with the CA-issued
// certificate and hands the connection to the TLS server.
func (e *Emulator) serveConnect(w http.ResponseWriter, r *http.Request) {
	// The emulator's own TLS address is allowed too, for clients that
	// proxy loopback traffic.
	if !e.emulatedHost(r.Host) && r.Host != e.tlsLn.Addr().String() {
		refuse(w, r.Host)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "kv-emulator: cannot hijack connection", http.StatusInternalServerError)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = conn.Close()
		return
	}
	// The client may already have sent its ClientHello into our buffer.
	c := net.Conn(conn)
	if brw.Reader.Buffered() > 0 {
		c = &bufferedConn{Conn: conn, r: brw.Reader}
	}
	if !e.connectLn.push(tls.Server(c, e.tlsConfig)) {
		_ = conn.Close()
	}
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// chanListener feeds hijacked CONNECT connections, wrapped in TLS, to the
// TLS http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// statusRecorder remembers the status for the access log and passes
// Hijack through for the Drop fault and CONNECT.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	if s.status == 0 {
		s.status = -1 // hijacked
	}
	return hj.Hijack()
}

func (s *statusRecorder) code() int { return s.status }

func writeJSON(w http.ResponseWriter, status int, v any) { _ = writeJSONSize(w, status, v) }

// writeJSONSize writes v as JSON and returns the size of the body.
func writeJSONSize(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "kv-emulator: encode response", http.StatusInternalServerError)
		return 0
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return len(b)
}

// sleepCtx waits d or until the request is cancelled.
func sleepCtx(r *http.Request, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// discardLog silences net/http's own error log (TLS handshake noise from
// clients that distrust the CA, which is expected in tests).
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
