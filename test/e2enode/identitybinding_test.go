//go:build node

package e2enode

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/akv-csi/provider/pkg/emulator"
)

// subjectIB is the pod's service account, bound to ibClientID (and federated with the workload
// identity client, which this test does not use: the seed needs one subject).
const subjectIB = "system:serviceaccount:ib:app"

// TestIdentityBinding mounts through AKS identity binding the way an AKS cluster serves it, with
// only the chart values Azure documents (the driver's tokenRequests include
// api://AKSIdentityBinding; the SecretProviderClass sets useAzureTokenProxy and clientID):
//   - the provider's default token proxy URL, https://kubernetes.default.svc.cluster.local, is
//     resolved by the cluster's DNS (a stand-in answers on the node's address, as CoreDNS would);
//   - the kubernetes Service address serves both the API server and the token proxy, told apart
//     by the TLS server name (an SNI router stands in for AKS's front end);
//   - the provider reads the cluster ID from the API server's certificate
//     (hcp-kubernetes.<id>.svc.cluster.local), computes the proxy's server name from it, and
//     trusts the proxy only through the cluster CA the chart mounts from kube-root-ca.crt: the
//     proxy's certificate is issued by the cluster CA, which nothing else in the pod trusts.
func TestIdentityBinding(t *testing.T) {
	e, err := loadEnv()
	if err != nil {
		t.Fatal(err)
	}
	lf, err := os.Create(filepath.Join(e.dir, "logs", "kv-emulator-ib.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	l := log.New(lf, "", log.LstdFlags|log.Lmicroseconds)
	logf := func(format string, args ...any) { l.Printf(format, args...) }
	kv, err := emulator.Start(emulator.Options{Seed: seed(e, subjectIB), Addr: e.nodeIP + ":0", ProxyAddr: e.nodeIP + ":0", Logf: logf})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	defer kv.Close()

	caPEM, err := os.ReadFile(filepath.Join(e.pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := os.ReadFile(filepath.Join(e.pki, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	clusterCA, err := emulator.LoadCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := kv.StartTokenProxy(emulator.TokenProxyOptions{ClusterID: e.clusterID, CA: clusterCA,
		Bindings: []emulator.IdentityBinding{{ClientID: ibClientID, Subject: subjectIB}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tp.Close() }()

	dns := startClusterDNS(t, e.nodeIP+":53", "kubernetes.default.svc.cluster.local.", net.ParseIP(e.kubeSvcIP))
	defer func() { _ = dns.Close() }()
	router := startSNIRouter(t, e.nodeIP+":0", tp.ServerName(), strings.TrimPrefix(tp.URL(), "https://"), e.apiAddr)
	defer func() { _ = router.Close() }()
	// The kubernetes Service's address now leads to the router (new connections only; the rule
	// goes first in node.sh's chain, before its DNAT to the API server).
	dnat := []string{"-d", e.kubeSvcIP + "/32", "-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination", router.ln.Addr().String()}
	if _, err := e.run(context.Background(), "", "iptables", append([]string{"-t", "nat", "-I", e.natChain, "1"}, dnat...)...); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := e.run(context.Background(), "", "iptables", append([]string{"-t", "nat", "-D", e.natChain}, dnat...)...); err != nil {
			t.Errorf("remove the router's DNAT rule: %v", err)
		}
	}()

	const ibRelease = "ib"
	install(t, e, kv, ibRelease,
		// The emulator's proxy is for Entra ID and Key Vault only; the token proxy is in-cluster.
		"--set", "linux.env[2].name=NO_PROXY", "--set", "linux.env[2].value=kubernetes.default.svc.cluster.local")
	defer func() {
		e.must(t, "delete", "namespace", "ib", "--ignore-not-found", "--timeout=3m")
		e.helmRun(t, "uninstall", ibRelease, "-n", releaseNS, "--wait", "--timeout", "3m")
	}()

	objs := []object{{name: "db-password", typ: "secret", mode: "600"}, {name: "web", typ: "cert", alias: "web.crt"}}
	modes := map[string]string{"db-password": "600"}
	e.apply(t, namespace("ib", "app", ""))
	e.apply(t, spc("ib", "kv", objs, map[string]string{"clientID": ibClientID, "useAzureTokenProxy": "true"}, ""))
	e.apply(t, pod("ib", "app", podSpec("app", "kv", "")))
	e.waitReady(t, "ib", "wait", "--for=condition=Ready", "pod/app", "--timeout=2m")
	checkPod(t, e, "ib", "app", expected(t, kv, objs), modes)

	// The provider asked the API server (by the Service's name) for its certificate, then the
	// token proxy (by the computed server name) for the identity's token, and got it.
	seen := router.serverNames()
	if seen["kubernetes.default.svc.cluster.local"] == 0 || seen[tp.ServerName()] == 0 {
		t.Errorf("server names through the kubernetes Service address: %v; want kubernetes.default.svc.cluster.local (the cluster ID) and %s (the token proxy)", seen, tp.ServerName())
	}
	var granted int
	for _, r := range tp.Requests() {
		if r.Status == 200 && r.Form.Get("client_id") == ibClientID && strings.HasSuffix(r.Path, "/oauth2/v2.0/token") {
			granted++
		}
	}
	if granted == 0 {
		t.Errorf("the token proxy granted no token for %s: %+v", ibClientID, tp.Requests())
	}
	if dns.answered() == 0 {
		t.Error("the cluster DNS stand-in answered no query for kubernetes.default.svc.cluster.local")
	}
	t.Logf("identity binding: pod mounted; token proxy granted %d token(s); server names via the Service address %v; DNS answers %d", granted, seen, dns.answered())
}

// clusterDNS answers A queries for one name with one address over UDP, as the cluster's DNS does
// for the kubernetes Service; every other name is NXDOMAIN, and other types have no answer.
type clusterDNS struct {
	pc      net.PacketConn
	mu      sync.Mutex
	answers int
}

func startClusterDNS(t *testing.T, addr, name string, ip net.IP) *clusterDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("cluster DNS stand-in: %v", err)
	}
	d := &clusterDNS{pc: pc}
	want := dnsmessage.MustNewName(name)
	var a [4]byte
	copy(a[:], ip.To4())
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
			match := strings.EqualFold(q.Name.String(), want.String())
			if !match {
				rh.RCode = dnsmessage.RCodeNameError
			}
			b := dnsmessage.NewBuilder(nil, rh)
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if match && q.Type == dnsmessage.TypeA {
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.AResource{A: a})
				d.mu.Lock()
				d.answers++
				d.mu.Unlock()
			}
			if msg, err := b.Finish(); err == nil {
				_, _ = pc.WriteTo(msg, from)
			}
		}
	}()
	return d
}

func (d *clusterDNS) answered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.answers
}

func (d *clusterDNS) Close() error { return d.pc.Close() }

// sniRouter passes each TLS connection through, unopened, to the token proxy when its server name
// is the proxy's and to the API server otherwise, as AKS's API server address does.
type sniRouter struct {
	ln    net.Listener
	mu    sync.Mutex
	names map[string]int
	conns map[net.Conn]bool
}

var errPeeked = errors.New("server name read")

func startSNIRouter(t *testing.T, addr, proxyName, proxyAddr, apiAddr string) *sniRouter {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &sniRouter{ln: ln, names: map[string]int{}, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.route(c, proxyName, proxyAddr, apiAddr)
		}
	}()
	return r
}

func (r *sniRouter) route(c net.Conn, proxyName, proxyAddr, apiAddr string) {
	defer func() { _ = c.Close() }()
	// Read the ClientHello through a TLS server that stops at it; what it read is replayed.
	var hello bytes.Buffer
	var name string
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	err := tls.Server(peekConn{c, io.TeeReader(c, &hello)}, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name = h.ServerName
		return nil, errPeeked
	}}).Handshake()
	if !errors.Is(err, errPeeked) {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	to := apiAddr
	if strings.EqualFold(name, proxyName) {
		to = proxyAddr
	}
	b, err := net.DialTimeout("tcp", to, 10*time.Second)
	if err != nil {
		return
	}
	defer func() { _ = b.Close() }()
	r.mu.Lock()
	r.names[name]++
	r.conns[c], r.conns[b] = true, true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		delete(r.conns, b)
		r.mu.Unlock()
	}()
	if _, err := b.Write(hello.Bytes()); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
}

func (r *sniRouter) serverNames() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for k, v := range r.names {
		m[k] = v
	}
	return m
}

// Close stops accepting and ends the connections it passes through (their clients reconnect).
func (r *sniRouter) Close() error {
	err := r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		_ = c.Close()
	}
	return err
}

// peekConn reads from r and discards writes, so a TLS server can parse a ClientHello without
// answering it.
type peekConn struct {
	net.Conn
	r io.Reader
}

func (p peekConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p peekConn) Write(b []byte) (int, error) { return len(b), nil }
