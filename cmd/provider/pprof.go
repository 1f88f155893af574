package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof" //nolint:gosec // G108: the handlers are mounted on pprofServer's own mux, on 127.0.0.1 only; nothing serves http.DefaultServeMux
	"strconv"
	"time"
)

// pprofServer serves net/http/pprof on 127.0.0.1:port only, never on other interfaces, from its
// own mux: the handlers net/http/pprof registers on http.DefaultServeMux are served by no server
// of this process.
func pprofServer(port int) (*http.Server, net.Listener, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("pprof listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, l, nil
}
