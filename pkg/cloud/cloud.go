// Package cloud maps a SecretProviderClass cloudName (and, for Azure Stack, its environment
// file) to the endpoints a mount talks to. Files are read per mount; nothing is process-wide.
package cloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/akv-csi/provider/pkg/config"
)

// Environment is the part of an Azure cloud a mount needs.
type Environment struct {
	Name string
	// AuthorityHost is the Entra ID (Azure AD) endpoint, e.g. https://login.microsoftonline.com/.
	AuthorityHost string
	// KeyVaultDNSSuffix is the domain vaults live under, e.g. vault.azure.net.
	KeyVaultDNSSuffix string
}

// VaultURL is the URL of the named vault in this cloud.
func (e Environment) VaultURL(vault string) string {
	return "https://" + vault + "." + e.KeyVaultDNSSuffix + "/"
}

// KnownAuthority reports whether Entra ID's instance discovery knows the authority host. For any
// other host (Azure Stack, a sovereign or private authority) instance discovery must be off, or
// MSAL would ask the public cloud about it.
func (e Environment) KnownAuthority() bool {
	u, err := url.Parse(e.AuthorityHost)
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Host) {
	case "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
		"login.chinacloudapi.cn", "login.partner.microsoftonline.cn", "login.microsoftonline.us", "login.usgovcloudapi.net":
		return true
	}
	return false
}

var builtin = map[string]Environment{
	config.AzurePublicCloud: {
		Name: config.AzurePublicCloud, AuthorityHost: "https://login.microsoftonline.com/", KeyVaultDNSSuffix: "vault.azure.net",
	},
	config.AzureChinaCloud: {
		Name: config.AzureChinaCloud, AuthorityHost: "https://login.chinacloudapi.cn/", KeyVaultDNSSuffix: "vault.azure.cn",
	},
	config.AzureUSGovernmentCloud: {
		Name: config.AzureUSGovernmentCloud, AuthorityHost: "https://login.microsoftonline.us/", KeyVaultDNSSuffix: "vault.usgovcloudapi.net",
	},
}

// Resolve returns the environment for a validated cloud name. For AzureStackCloud it reads
// envFile, the Azure environment JSON that Azure's provider reads (go-autorest field names).
func Resolve(name, envFile string) (Environment, error) {
	if env, ok := builtin[name]; ok {
		return env, nil
	}
	if name != config.AzureStackCloud {
		return Environment{}, fmt.Errorf("unknown cloud %q", name)
	}
	return readEnvFile(envFile)
}

// envFileFields are the fields of a go-autorest Environment JSON that a mount uses.
type envFileFields struct {
	Name                    string `json:"name"`
	ActiveDirectoryEndpoint string `json:"activeDirectoryEndpoint"`
	KeyVaultDNSSuffix       string `json:"keyVaultDNSSuffix"`
}

// MaxEnvFileBytes bounds the Azure Stack environment file (a real one is about 2 KiB).
const MaxEnvFileBytes = 1 << 20

func readEnvFile(path string) (Environment, error) {
	data, err := readRegularFile(path, MaxEnvFileBytes)
	if err != nil {
		return Environment{}, fmt.Errorf("read %s %q: %w; mount the Azure Stack environment file on the node at that path",
			config.CloudEnvFileName, path, err)
	}
	var f envFileFields
	if err := json.Unmarshal(data, &f); err != nil {
		// Never the decoder's message: it quotes the file's bytes.
		where := ""
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			where = fmt.Sprintf(" (invalid JSON at byte %d)", syntax.Offset)
		}
		return Environment{}, fmt.Errorf("%s %q is not an Azure environment JSON file%s", config.CloudEnvFileName, path, where)
	}
	var problems []string
	u, err := url.Parse(strings.TrimSpace(f.ActiveDirectoryEndpoint))
	if err != nil || u.Scheme != "https" || u.Host == "" {
		problems = append(problems, "activeDirectoryEndpoint must be an https URL")
	}
	suffix := strings.Trim(strings.TrimSpace(f.KeyVaultDNSSuffix), ".")
	if suffix == "" || strings.ContainsAny(suffix, "/ ") {
		problems = append(problems, "keyVaultDNSSuffix must be a DNS suffix such as vault.local.azurestack.external")
	}
	if len(problems) > 0 {
		return Environment{}, fmt.Errorf("%s %q: %s", config.CloudEnvFileName, path, strings.Join(problems, "; "))
	}
	name := f.Name
	if name == "" {
		name = config.AzureStackCloud
	}
	authority := strings.TrimRight(strings.TrimSpace(f.ActiveDirectoryEndpoint), "/") + "/"
	return Environment{Name: name, AuthorityHost: authority, KeyVaultDNSSuffix: suffix}, nil
}

// readRegularFile reads at most limit bytes of a regular file: a device, FIFO, socket or directory
// (such as /dev/zero, which never ends) is refused before it is opened for reading.
func readRegularFile(path string, limit int64) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("it is %s, not a regular file", fileKind(info.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	if info, err = f.Stat(); err != nil || !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
