package keyvault

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// MaxConnsPerVault bounds the connections to one vault host, all of which are kept for reuse
// when idle.
//
// azcore's default HTTP client keeps 10 idle connections per host and opens as many as there
// are reads in flight. Key Vault answers over HTTP/1.1, one request per connection at a time,
// so each burst of N concurrent reads (a node starting its pods, replicas mounting together)
// opened N connections and the next burst paid a TCP connect, a proxy CONNECT and a full TLS
// handshake (key exchange and certificate verification) for all but 10 of its reads:
// handshakes were half of the provider's CPU in a warm bench of 64 mounts at once.
//
// Why 256: Key Vault serves about 400 reads/s per vault (4,000 per 10 s), and this provider's
// per-vault limiter lets 200/s through (--vault-rate-limit). 256 connections carry 256/RTT
// reads per second: 12,800/s at a 20 ms round trip and still 2,560/s at 100 ms, so the cap
// never slows reads the vault would accept; it only queues the part of a burst beyond 256 for
// one round trip (the default --vault-burst of 400 takes two). Keeping all 256 when idle means
// a connection is set up once per burst size, not once per burst; an idle connection costs
// about 40 KiB and two parked goroutines, and is closed after idleConnTimeout.
const MaxConnsPerVault = 256

// idleConnTimeout closes connections unused this long: less than the driver's default rotation
// poll (2 min), so a node that only polls does not hold connections between polls, and less
// than the idle timeout of Azure's load balancers (4 min), so a kept connection is rarely one
// the server side already dropped.
const idleConnTimeout = 90 * time.Second

// sharedTransport is the HTTP transport of every Key Vault client of the process, so all
// identities reading one vault reuse the same pool of connections (each carries its own
// Authorization header; nothing else of a request is tied to the connection). It is azcore's
// default transport (proxy from the environment, TLS 1.2+, HTTP/2 when offered with its
// health-check pings) with a bounded pool of connections that are all kept for reuse.
var sharedTransport = &http.Client{Transport: newTransport()}

func newTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          MaxConnsPerVault, // all vaults together: each costs memory (README, "Memory")
		MaxIdleConnsPerHost:   MaxConnsPerVault,
		MaxConnsPerHost:       MaxConnsPerVault,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig: &tls.Config{
			MinVersion:    tls.VersionTLS12,
			Renegotiation: tls.RenegotiateFreelyAsClient,
		},
		// As azcore configures HTTP/2: ping a connection idle for 10 s, close it if no answer in 5 s.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 10 * time.Second, PingTimeout: 5 * time.Second},
	}
}
