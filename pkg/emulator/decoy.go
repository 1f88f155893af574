package emulator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// The decoy is a TLS listener on loopback that stands for a host other than the vault: the
// ForeignNextLink fault points list pages at it. Its certificate is the emulator's (it covers
// 127.0.0.1), so a client that trusts the emulator's CA and follows the link completes the TLS
// handshake and sends the request, token included. It counts what arrives (DecoyRequests,
// DecoyAuthorizations; the token itself is never kept) and answers every request with an empty
// last page.
type decoy struct {
	ln  net.Listener
	srv *http.Server
}

func (e *Emulator) startDecoy() error {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen decoy: %w", err)
	}
	d := &decoy{ln: tls.NewListener(tcp, e.tlsConfig)}
	d.srv = &http.Server{ReadHeaderTimeout: 30 * time.Second, ErrorLog: discardLog(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			authorized := r.Header.Get("Authorization") != ""
			e.stats.update(func(c *Counters) {
				c.DecoyRequests++
				if authorized {
					c.DecoyAuthorizations++
				}
			})
			e.logf("kv-emulator: decoy %s https://%s%s (authorization: %v)", r.Method, r.Host, r.URL.Path, authorized)
			writeJSON(w, http.StatusOK, map[string]any{"value": []any{}, "nextLink": nil})
		})}
	e.decoy = d
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.logf("kv-emulator: decoy: %v", err)
		}
	}()
	return nil
}

// DecoyURL is the decoy listener, https://127.0.0.1:PORT: the other host of the ForeignNextLink
// fault.
func (e *Emulator) DecoyURL() string { return "https://" + e.decoy.ln.Addr().String() }
