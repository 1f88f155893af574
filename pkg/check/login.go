package check

import (
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// newOperatorLogin lists the operator's own logins, in the order they are tried: the Azure CLI,
// the Azure Developer CLI, and a service principal in AZURE_CLIENT_ID, AZURE_TENANT_ID and
// AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH (when they are set).
func newOperatorLogin() *operatorLogin {
	l := &operatorLogin{tokens: map[string]azcore.AccessToken{}}
	if c, err := azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{AdditionallyAllowedTenants: []string{"*"}}); err == nil {
		l.candidates = append(l.candidates, namedCredential{name: "Azure CLI login (az)", cred: c})
	}
	if c, err := azidentity.NewAzureDeveloperCLICredential(&azidentity.AzureDeveloperCLICredentialOptions{AdditionallyAllowedTenants: []string{"*"}}); err == nil {
		l.candidates = append(l.candidates, namedCredential{name: "Azure Developer CLI login (azd)", cred: c})
	}
	if os.Getenv("AZURE_CLIENT_ID") != "" {
		if c, err := azidentity.NewEnvironmentCredential(nil); err == nil {
			l.candidates = append(l.candidates, namedCredential{name: "service principal in AZURE_CLIENT_ID (environment)", cred: c})
		}
	}
	return l
}
