package provider

import (
	"fmt"
	"strings"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// Codes of the provider's own refusals, whose details say what to change (no hint is added).
const (
	// codeTokenSubject marks a refused service account token (its subject is not the pod's).
	codeTokenSubject = "TokenSubjectMismatch"
	// codePolicy marks a mount the operator's policy refuses (--managed-identity-namespaces ...).
	codePolicy = "ProviderPolicy"
	// codeProviderLimit marks a read or mount that waited for the provider's own limits (rate,
	// concurrent mounts) past the driver's deadline.
	codeProviderLimit = "ProviderLimit"
)

// ObjectError is the failure of one object.
type ObjectError struct {
	Object config.Object
	Err    *keyvault.Error
}

// MountError is a failed mount: either one failure for the whole mount (Err) or one per failed
// object. Its message names the vault, the identity, the pod, every failed object and what to do.
type MountError struct {
	Config  config.MountConfig
	Err     *keyvault.Error
	Objects []ObjectError
}

// Kind is the kind of the mount failure, or of the first failed object.
func (e *MountError) Kind() keyvault.Kind {
	if e.Err != nil {
		return e.Err.Kind
	}
	if len(e.Objects) > 0 {
		return e.Objects[0].Err.Kind
	}
	return keyvault.KindInternal
}

func (e *MountError) Error() string {
	c := e.Config
	who := fmt.Sprintf("pod %s as %s in tenant %s", c.Pod, c.Identity, c.TenantID)
	if e.Err != nil {
		return fmt.Sprintf("mount vault %q for %s: %s%s", c.VaultName, who, e.Err.Detail, hint(e.Err, config.Object{}, c))
	}
	parts := make([]string, len(e.Objects))
	for i, oe := range e.Objects {
		parts[i] = oe.Message(c)
	}
	return fmt.Sprintf("%d of %d objects failed for %s: %s", len(e.Objects), len(c.Objects), who, strings.Join(parts, " | "))
}

// Message is the object's part of the error of mount c: the read that failed, why, and what to do.
func (oe ObjectError) Message(c config.MountConfig) string {
	return fmt.Sprintf("get %s in vault %q: %s%s", oe.Object.Describe(), c.Vault(oe.Object), oe.Err.Detail, hint(oe.Err, oe.Object, c))
}

// roles are the built-in roles and access-policy permissions that allow reading each object type.
var roles = map[config.ObjectType]struct{ role, permission string }{
	config.TypeSecret: {"Key Vault Secrets User", "secrets get"},
	config.TypeKey:    {"Key Vault Crypto User", "keys get"},
	config.TypeCert:   {"Key Vault Certificate User", "certificates get"},
}

// Access is what an identity needs on the vault to read o: the built-in role (RBAC), or the
// permissions in the vault's access policy. ok is false for an object type without a role.
func Access(o config.Object) (role, permissions string, ok bool) {
	r, ok := roles[o.Type]
	if !ok {
		return "", "", false
	}
	permissions = r.permission
	if o.History > 0 || o.Selection() {
		permissions += " and list"
	}
	return r.role, permissions, true
}

// hint says what to change for a failure, given the object (zero for mount-level) and the mount.
func hint(e *keyvault.Error, o config.Object, c config.MountConfig) string {
	id := c.Identity
	switch e.Kind {
	case keyvault.KindPermissionDenied:
		if e.Code == codeTokenSubject || e.Code == codePolicy {
			return "" // the detail says what to change
		}
		if e.Disabled() {
			return "; this version is disabled: enable it in the vault or set objectVersion to an enabled version"
		}
		role, permissions, ok := Access(o)
		if !ok {
			return "; grant this identity a Key Vault data-plane role on the vault"
		}
		rbac := "RBAC"
		if strings.HasSuffix(permissions, " and list") {
			rbac = "RBAC; the role includes list"
		}
		return fmt.Sprintf("; grant %s the %q role on vault %q (%s), or the %s permission in the vault's access policy",
			id, role, c.Vault(o), rbac, permissions)
	case keyvault.KindNotFound:
		return fmt.Sprintf("; check objectName, objectType and objectVersion: vault %q has no such %s", c.Vault(o), o.Type)
	case keyvault.KindUnauthenticated:
		return authHint(e, c)
	case keyvault.KindUnavailable:
		if e.Code == codeProviderLimit {
			return "" // the detail says what happened; the driver retries
		}
		if e.Status == 429 {
			return "; Key Vault is throttling reads from this vault: the driver will retry; spread rotation polls or reduce mounts"
		}
		return "; check that the node can reach Key Vault and Entra ID (proxy, DNS, firewall, private endpoint)"
	case keyvault.KindDeadlineExceeded:
		return "; Key Vault or Entra ID did not answer in time: check network reachability from the node"
	}
	return ""
}

func authHint(e *keyvault.Error, c config.MountConfig) string {
	id := c.Identity
	switch e.Code {
	case "7000215", "7000222":
		return fmt.Sprintf("; the clientsecret in the nodePublishSecretRef Secret is wrong or expired for application %s: put a current client secret there", id.ClientID)
	case "700016", "90002", "900023":
		return fmt.Sprintf("; application %s was not found in tenant %s: check the client ID (%s / clientid) and tenantId", id.ClientID, c.TenantID, config.ClientID)
	case "70021", "700211", "700212", "700213":
		iss, sub := auth.TokenSubject(id.Token)
		return fmt.Sprintf("; add a federated credential to application %s with issuer %q, subject %q and audience %q",
			id.ClientID, iss, sub, id.Mode.TokenAudience())
	case "700027":
		return "; Entra ID could not verify the service account token's signature: the federated credential's issuer must be this cluster's OIDC issuer and its keys must be published"
	}
	if id.Mode == config.IdentityBinding {
		return "" // the token proxy's message says what to check
	}
	if id.Mode == config.ManagedIdentity {
		if id.ClientID != "" {
			return fmt.Sprintf("; the node has no user-assigned managed identity with client ID %s: assign it to the node's VM or scale set, or fix %s",
				id.ClientID, config.UserAssignedIdentityID)
		}
		return fmt.Sprintf("; the node has no usable system-assigned managed identity: enable it, or set %s to a user-assigned identity of the node", config.UserAssignedIdentityID)
	}
	return fmt.Sprintf("; check the identity's client ID and tenant (%s)", c.TenantID)
}
