package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/provider"
)

// Explanation is what the provider will do with a valid SecretProviderClass, and what Azure and
// the cluster must have for it to work.
type Explanation struct {
	Vault    string `json:"vault"`
	VaultURL string `json:"vaultURL,omitempty"`
	Cloud    string `json:"cloud"`
	TenantID string `json:"tenantID"`
	Identity Choice `json:"identity"`
	// FederatedCredential is what the application or identity needs for workload identity.
	FederatedCredential *FederatedCredential `json:"federatedCredential,omitempty"`
	// Needs are the other things Azure or the cluster must have, in order.
	Needs   []Need        `json:"needs"`
	Objects []ObjectNeeds `json:"objects"`
}

// Choice is the identity the provider picks, and the rule of its precedence that picks it.
type Choice struct {
	Mode     string `json:"mode"`
	Identity string `json:"identity"`
	ClientID string `json:"clientID,omitempty"`
	// Rule is the number of the deciding rule of config.IdentityPrecedence, of Rules.
	Rule  int    `json:"rule"`
	Rules int    `json:"rules"`
	When  string `json:"when"`
	Then  string `json:"then"`
}

// FederatedCredential is the federated identity credential workload identity needs.
type FederatedCredential struct {
	ClientID string `json:"clientID"`
	Issuer   string `json:"issuer,omitempty"`
	Subject  string `json:"subject"`
	Audience string `json:"audience"`
}

// Need is one requirement, in words.
type Need struct {
	What   string `json:"what"`
	Detail string `json:"detail"`
}

// ObjectNeeds is one object: the files it writes and what the identity needs to read it.
type ObjectNeeds struct {
	Object      string `json:"object"`
	Files       []File `json:"files"`
	Role        string `json:"role"`
	Permissions string `json:"accessPolicy"`
}

// File is one file a mount writes.
type File struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
}

func (c *checker) explain(ctx context.Context, t target, req driverRequest, cfg config.MountConfig, res *Result) *Explanation {
	rules := config.IdentityPrecedence()
	rule := config.IdentityRuleFor(req.attributes, req.secrets)
	id := cfg.Identity
	e := &Explanation{Vault: cfg.VaultName, Cloud: cfg.CloudName, TenantID: cfg.TenantID,
		Identity: Choice{Mode: id.Mode.String(), Identity: id.String(), ClientID: id.ClientID, Rule: rule, Rules: len(rules)}}
	if rule >= 1 && rule <= len(rules) {
		e.Identity.When, e.Identity.Then = plain(rules[rule-1].When), plain(rules[rule-1].Then)
	}
	if id.Mode == config.ServicePrincipal {
		e.Identity.Identity, e.Identity.ClientID = "service principal (client ID from the nodePublishSecretRef Secret)", ""
	}
	env, err := cloud.Resolve(cfg.CloudName, cfg.CloudEnvFile)
	if err == nil {
		e.VaultURL = env.VaultURL(cfg.VaultName)
	} else {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the vault's URL depends on %s %q on the node, which cannot be read here: %v", config.CloudEnvFileName, cfg.CloudEnvFile, err))
	}

	who := principal(id)
	need := func(what, format string, args ...any) {
		e.Needs = append(e.Needs, Need{What: what, Detail: fmt.Sprintf(format, args...)})
	}
	tokenRequest := func(audience string) {
		assumed := "assumed, as the chart sets it; see --token-audiences"
		if t.pod != nil {
			assumed = "assumed; see --token-audiences"
		}
		need("token request", "the secrets-store.csi.k8s.io CSIDriver requests service account tokens for audience %s (tokenRequests; %s)", audience, assumed)
	}
	switch id.Mode {
	case config.WorkloadIdentity:
		fc := &FederatedCredential{ClientID: id.ClientID, Subject: auth.ServiceAccountSubject(req.pod), Audience: config.WorkloadIdentityAudience}
		fc.Issuer = c.issuerFor(ctx, res)
		e.FederatedCredential = fc
		issuer := fc.Issuer
		if issuer == "" {
			issuer = "<the cluster's OIDC issuer URL>"
		}
		need("federated credential", "on %s in tenant %s: issuer %s, subject %s, audience %s", who, cfg.TenantID, issuer, fc.Subject, fc.Audience)
		tokenRequest(config.WorkloadIdentityAudience)
	case config.IdentityBinding:
		need("identity binding", "an AKS identity binding of %s to this cluster", who)
		need("Kubernetes RBAC", "service account %s/%s may use it: a ClusterRole with verb use-managed-identity on cid.wi.aks.azure.com/%s, bound to it",
			req.pod.Namespace, req.pod.ServiceAccount, id.ClientID)
		tokenRequest(config.IdentityBindingAudience)
	case config.ManagedIdentity:
		if strings.TrimSpace(req.attributes[config.ClientID]) != "" {
			need("token request", "clientID is set, so the secrets-store.csi.k8s.io CSIDriver must request service account tokens for audience %s "+
				"although the managed identity ignores clientID (rule 3 of the identity precedence); or remove clientID", config.WorkloadIdentityAudience)
		}
		if id.ClientID == "" {
			need("node identity", "the nodes' VMs or scale set have a system-assigned managed identity (the provider reads as the node it runs on)")
		} else {
			need("node identity", "%s is assigned to the nodes' VMs or scale set (AKS: to the node pool)", who)
		}
	case config.ServicePrincipal:
		need("client secret", "the pod's CSI volume sets nodePublishSecretRef to a Secret in namespace %s with the keys clientid and clientsecret "+
			"of an application in tenant %s, labelled secrets-store.csi.k8s.io/used=true", req.pod.Namespace, cfg.TenantID)
	}

	var roles, permissions []string
	for _, o := range cfg.Objects {
		role, perms, _ := provider.Access(o)
		on := ObjectNeeds{Object: objectLabel(o), Role: role, Permissions: perms}
		paths := o.Paths()
		if len(paths) == 0 { // a selection: its files are named by the objects the vault lists
			paths = []string{path.Join(o.FileName(), "<each match>")}
		}
		for _, p := range paths {
			on.Files = append(on.Files, File{Path: p, Mode: fmt.Sprintf("%04o", o.Mode)})
		}
		e.Objects = append(e.Objects, on)
		roles, permissions = appendNew(roles, role), appendNew(permissions, perms)
	}
	need("grant", "%s on vault %s: %s (RBAC), or in the vault's access policy: %s", who, cfg.VaultName,
		strings.Join(roles, ", "), strings.Join(widest(permissions), "; "))
	return e
}

// principal names, for an operator, the Entra ID principal that needs the roles.
func principal(id config.Identity) string {
	switch id.Mode {
	case config.WorkloadIdentity:
		return "the application or user-assigned managed identity with client ID " + id.ClientID
	case config.IdentityBinding:
		return "the user-assigned managed identity with client ID " + id.ClientID
	case config.ManagedIdentity:
		if id.ClientID == "" {
			return "the nodes' system-assigned managed identity"
		}
		return "the user-assigned managed identity with client ID " + id.ClientID
	}
	return "the application whose client ID is in the nodePublishSecretRef Secret"
}

// objectLabel names an object in a table: type/name, the pinned version, and the format and
// encoding when they are not the defaults.
func objectLabel(o config.Object) string {
	if o.Name == "" { // a selection
		return o.Describe()
	}
	s := o.ID()
	if o.Version != "" {
		s += "@" + o.Version
	}
	var as []string
	if o.History > 0 {
		as = append(as, fmt.Sprintf("%d newest versions", o.History))
	}
	if o.Format != "" && o.Format != config.FormatPEM {
		as = append(as, o.Format)
	}
	if o.Encoding != "" && o.Encoding != config.EncodingUTF8 {
		as = append(as, o.Encoding)
	}
	if len(as) > 0 {
		s += " (" + strings.Join(as, ", ") + ")"
	}
	return s
}

func appendNew(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// widest drops each permission that another extends ("secrets get" for "secrets get and list").
func widest(permissions []string) []string {
	var out []string
	for _, p := range permissions {
		extended := false
		for _, q := range permissions {
			extended = extended || strings.HasPrefix(q, p+" ")
		}
		if !extended {
			out = append(out, p)
		}
	}
	return out
}

// plain drops the Markdown code marks of the precedence table.
func plain(s string) string { return strings.ReplaceAll(s, "`", "") }

// issuerFor is the cluster's OIDC issuer: Options.Issuer, else the issuer of the live token, else
// what kubectl reads from the cluster (once per run).
func (c *checker) issuerFor(ctx context.Context, res *Result) string {
	if c.opts.Issuer != "" {
		return c.opts.Issuer
	}
	if c.live != nil && c.live.tokenIssuer != "" {
		return c.live.tokenIssuer
	}
	if !c.issuerDone {
		c.issuerDone = true
		c.issuer, c.issuerError = c.discoverIssuer(ctx)
	}
	if c.issuer == "" {
		res.Warnings = append(res.Warnings, "the cluster's OIDC issuer is unknown ("+c.issuerError+"): pass --issuer "+
			"(AKS: az aks show -n CLUSTER -g GROUP --query oidcIssuerProfile.issuerUrl -o tsv)")
	}
	return c.issuer
}

// discoverIssuer reads the issuer of the current kube context's OIDC discovery document.
func (c *checker) discoverIssuer(ctx context.Context) (string, string) {
	if c.opts.Kubectl == "" {
		return "", "kubectl is not used"
	}
	out, err := c.kubectl(ctx, "get", "--raw", "/.well-known/openid-configuration")
	if err != nil {
		return "", err.Error()
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || doc.Issuer == "" {
		return "", "the cluster's /.well-known/openid-configuration has no issuer"
	}
	return doc.Issuer, ""
}

// kubectl runs kubectl with the context of Options, within 20 seconds.
func (c *checker) kubectl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if c.opts.KubeContext != "" {
		args = append([]string{"--context", c.opts.KubeContext}, args...)
	}
	cmd := exec.CommandContext(ctx, c.opts.Kubectl, args...) //nolint:gosec // the operator's kubectl, with fixed arguments
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		var exitErr *exec.ExitError
		if msg == "" || !errors.As(err, &exitErr) {
			msg = err.Error()
		}
		return nil, fmt.Errorf("kubectl %s: %s", strings.Join(args, " "), msg)
	}
	return out, nil
}
