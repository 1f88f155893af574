package check

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// em is the emulator of this test process. As in test/integration, the provider reaches it the
// way an operator would redirect it: HTTPS_PROXY/HTTP_PROXY to the emulator's proxy on loopback
// and SSL_CERT_FILE trusting its CA (Go reads both once per process), and for the custom-cloud
// route an AzureStackCloud environment file. Nothing leaves the machine.
var em *emulator.Emulator

// cloudEnvFile is the emulator's AzureStackCloud environment file.
var cloudEnvFile string

// logFile collects everything the provider logs (at -v=10), to check that no value reaches a log.
var logFile string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "akv-check-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	em, err = emulator.Start(emulator.Options{Seed: seed()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start emulator:", err)
		return 1
	}
	defer em.Close()
	cloudEnvFile = filepath.Join(dir, "cloud.json")
	if err := em.PointProcessAt(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := em.WriteCloudEnv(cloudEnvFile); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// An Azure CLI that is logged in as the operator (first on PATH; azidentity runs
	// "az account get-access-token" through /bin/sh).
	bin := filepath.Join(dir, "bin")
	for k, v := range map[string]string{"PATH": bin + string(os.PathListSeparator) + os.Getenv("PATH"), "AZURE_CLIENT_ID": ""} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := fakeAzureCLI(bin); err != nil {
		fmt.Fprintln(os.Stderr, "fake az:", err)
		return 1
	}

	logFile = filepath.Join(dir, "provider.log")
	logs, err := os.Create(logFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logs.Close()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", "10")
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(logs) // an *os.File is safe for concurrent writes

	code := m.Run()
	klog.Flush()
	logged, err := os.ReadFile(logFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, v := range secretValues() {
		if strings.Contains(string(logged), v) {
			fmt.Fprintf(os.Stderr, "FAIL: the provider's logs hold a secret value: %q\n", v)
			return 1
		}
	}
	return code
}

// fakeAzureCLI writes an az that answers get-access-token with a Key Vault token of the
// operator's service principal, obtained from the emulator, for the vault's tenant only (an az
// logged in to one tenant).
func fakeAzureCLI(bin string) error {
	cred, err := azidentity.NewClientSecretCredential(tenant, operatorApp, operatorSecret, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}, TenantID: tenant})
	if err != nil {
		return err
	}
	answer, err := json.Marshal(struct { //nolint:gosec // the fake az prints a test token, as az does
		AccessToken string `json:"accessToken"`
		ExpiresOn   int64  `json:"expires_on"`
		Tenant      string `json:"tenant"`
		TokenType   string `json:"tokenType"`
	}{tok.Token, tok.ExpiresOn.Unix(), tenant, "Bearer"})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(bin, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bin, "az-token.json"), answer, 0o600); err != nil {
		return err
	}
	script := `#!/bin/sh
case "$*" in
  "account get-access-token -o json --resource https://vault.azure.net --tenant ` + tenant + `") cat "$(dirname "$0")/az-token.json" ;;
  *) echo "ERROR: AADSTS50020: the signed-in user is not in tenant (az $*). Run 'az login --tenant'" >&2; exit 1 ;;
esac
`
	return os.WriteFile(filepath.Join(bin, "az"), []byte(script), 0o700) //nolint:gosec // an executable test script
}

var _ azcore.TokenCredential = (*operatorLogin)(nil)

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/check -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got); if the change is right, run go test ./pkg/check -run '%s' -update:\n%s", path, t.Name(), diff)
	}
}

// offline are the options of a check without kubectl, live reads or a known issuer.
func offline(files ...string) Options {
	return Options{Files: files, Issuer: "https://oidc.example.test", ConstructPEMChain: true, Defaults: config.Defaults{CloudName: config.AzurePublicCloud}}
}

// runCheck runs a check and renders it as text and JSON.
func runCheck(t *testing.T, o Options) (*Report, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var text, js bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	return rep, text.String(), js.String()
}
