// Package harness runs the built binaries (the emulator and the provider) as an operator would,
// for make demo and make bench, and builds mount requests exactly as the driver does.
package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// Endpoints is what kv-emulator writes to <state-dir>/endpoints.json.
type Endpoints struct {
	URL      string `json:"url"`
	ProxyURL string `json:"proxyURL"`
	TenantID string `json:"tenantID"`
}

// Process is a started binary whose output goes to a log file.
type Process struct {
	cmd *exec.Cmd
	log *os.File
}

// Start runs path with args and extra environment, logging to logFile.
func Start(logFile, path string, env []string, args ...string) (*Process, error) {
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = append(os.Environ(), env...), log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w (run make build first)", path, err)
	}
	return &Process{cmd: cmd, log: log}, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop interrupts the process, and kills it if it has not exited within 5 s.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

// StartEmulator runs kv-emulator with seedFile and waits until it is listening.
func StartEmulator(dir, bin, seedFile string) (*Process, Endpoints, error) {
	stateDir := filepath.Join(dir, "emulator")
	p, err := Start(filepath.Join(dir, "emulator.log"), filepath.Join(bin, "kv-emulator"), nil, "--seed", seedFile, "--state-dir", stateDir)
	if err != nil {
		return nil, Endpoints{}, err
	}
	var e Endpoints
	if err := WaitFor(func() error { return readJSON(filepath.Join(stateDir, "endpoints.json"), &e) }); err != nil {
		p.Stop()
		return nil, Endpoints{}, fmt.Errorf("emulator did not start (see %s): %w", filepath.Join(dir, "emulator.log"), err)
	}
	return p, e, nil
}

// Provider is a running provider binary with a driver-side gRPC client on its socket.
type Provider struct {
	*Process
	Socket string
	Client v1alpha1.CSIDriverProviderClient
	conn   *grpc.ClientConn
}

// Stop closes the client and stops the provider.
func (p *Provider) Stop() {
	_ = p.conn.Close()
	p.Process.Stop()
}

// StartProvider runs the provider routed to the emulator exactly as an operator would route it
// through a proxy with a private CA, waits for its socket and connects to it as the driver does.
func StartProvider(dir, bin string, e Endpoints, args ...string) (*Provider, error) {
	socket := filepath.Join(dir, "providers", "azure.sock")
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, err
	}
	env := []string{"HTTPS_PROXY=" + e.ProxyURL, "HTTP_PROXY=" + e.ProxyURL, "NO_PROXY=", "SSL_CERT_FILE=" + filepath.Join(dir, "emulator", "ca.pem")}
	args = append([]string{"--endpoint", "unix://" + socket, "--healthz-port", "0", "--prometheus-port", "0"}, args...)
	p, err := Start(filepath.Join(dir, "provider.log"), filepath.Join(bin, "provider"), env, args...)
	if err != nil {
		return nil, err
	}
	if err := WaitFor(func() error { _, err := os.Stat(socket); return err }); err != nil {
		p.Stop()
		return nil, fmt.Errorf("provider did not create its socket (see %s): %w", filepath.Join(dir, "provider.log"), err)
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.Stop()
		return nil, err
	}
	return &Provider{Process: p, Socket: socket, Client: v1alpha1.NewCSIDriverProviderClient(conn), conn: conn}, nil
}

// WaitFor retries check for up to 20 s.
func WaitFor(check func() error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Admin calls the emulator's admin API (on its proxy port, loopback only).
func Admin(e Endpoints, method, path string, in, out any) error {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequest(method, e.ProxyURL+path, &body)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// MountRequest builds a request as the driver does: the SecretProviderClass parameters merged with
// the pod's volume context, the objects YAML, each map JSON-encoded, and the default mode as JSON.
// token, if set, is the pod's service account token for api://AzureADTokenExchange.
func MountRequest(params, secrets map[string]string, token string, objects []string) *v1alpha1.MountRequest {
	attrs := map[string]string{
		"csi.storage.k8s.io/pod.name": "demo-app", "csi.storage.k8s.io/pod.namespace": "default",
		"csi.storage.k8s.io/pod.uid": "00000000-0000-4000-8000-000000000001", "csi.storage.k8s.io/serviceAccount.name": "demo-sa",
		"csi.storage.k8s.io/ephemeral": "false", "secretProviderClass": "demo",
	}
	if token != "" {
		tokens, _ := json.Marshal(map[string]map[string]string{"api://AzureADTokenExchange": {"token": token, "expirationTimestamp": time.Now().Add(time.Hour).Format(time.RFC3339)}})
		attrs["csi.storage.k8s.io/serviceAccount.tokens"] = string(tokens)
	}
	for k, v := range params {
		attrs[k] = v
	}
	var b strings.Builder
	b.WriteString("array:\n")
	for _, o := range objects {
		b.WriteString("  - |\n    " + strings.ReplaceAll(o, "\n", "\n    ") + "\n")
	}
	attrs["objects"] = b.String()
	if secrets == nil {
		secrets = map[string]string{}
	}
	a, _ := json.Marshal(attrs)
	s, _ := json.Marshal(secrets)
	perm, _ := json.Marshal(os.FileMode(0o644))
	return &v1alpha1.MountRequest{Attributes: string(a), Secrets: string(s), Permission: string(perm), TargetPath: "/var/lib/kubelet/pods/demo/volumes/kubernetes.io~csi/secrets/mount"}
}
