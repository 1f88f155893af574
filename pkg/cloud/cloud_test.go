package cloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/akv-csi/provider/pkg/config"
)

func TestResolveBuiltin(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		config.AzurePublicCloud:       "https://kv.vault.azure.net/",
		config.AzureChinaCloud:        "https://kv.vault.azure.cn/",
		config.AzureUSGovernmentCloud: "https://kv.vault.usgovcloudapi.net/",
	} {
		env, err := Resolve(name, "")
		if err != nil || env.VaultURL("kv") != want || !env.KnownAuthority() {
			t.Errorf("Resolve(%s) = %+v, %v", name, env, err)
		}
	}
}

func TestResolveAzureStack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://adfs.local.azurestack.external/adfs/",
		"keyVaultDNSSuffix":"vault.local.azurestack.external","resourceManagerEndpoint":"https://management.local.azurestack.external/"}`)
	env, err := Resolve(config.AzureStackCloud, good)
	if err != nil {
		t.Fatal(err)
	}
	if env.AuthorityHost != "https://adfs.local.azurestack.external/adfs/" || env.VaultURL("kv") != "https://kv.vault.local.azurestack.external/" {
		t.Errorf("env = %+v", env)
	}
	if env.KnownAuthority() {
		t.Error("an Azure Stack authority must not be sent to public instance discovery")
	}

	for _, tt := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "none.json"), "no such file or directory; mount the Azure Stack environment file"},
		{"not JSON", write("bad.json", "{"), "is not an Azure environment JSON file"},
		{"http authority", write("http.json", `{"activeDirectoryEndpoint":"http://login","keyVaultDNSSuffix":"vault.x"}`), "activeDirectoryEndpoint must be an https URL"},
		{"no suffix", write("nosuffix.json", `{"activeDirectoryEndpoint":"https://login"}`), "keyVaultDNSSuffix must be a DNS suffix"},
	} {
		if _, err := Resolve(config.AzureStackCloud, tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestEnvFileHostile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, MaxEnvFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	secretish := filepath.Join(dir, "not-json")
	if err := os.WriteFile(secretish, []byte("hunter2-top-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "a character device, not a regular file"},
		{dir, "a directory, not a regular file"},
		{big, "larger than 1048576 bytes"},
		{secretish, "is not an Azure environment JSON file (invalid JSON at byte 1)"},
	} {
		_, err := Resolve(config.AzureStackCloud, tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Resolve(%s) = %v, want an error containing %q", tc.path, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error quotes the file's content: %v", err)
		}
	}
}
