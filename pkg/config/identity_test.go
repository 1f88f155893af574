package config

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// identityInputs are the six inputs that decide a mount's identity.
type identityInputs struct {
	podIdentity, vmManagedIdentity, tokenProxy bool // the three flags, "true" or absent
	clientID                                   bool // clientID set
	tokens                                     bool // serviceAccount.tokens holds a token for both audiences
	secrets                                    bool // nodePublishSecretRef with clientid and clientsecret
}

func (in identityInputs) String() string {
	var on []string
	for _, f := range []struct {
		on   bool
		name string
	}{
		{in.podIdentity, "pod"}, {in.vmManagedIdentity, "vm"}, {in.tokenProxy, "proxy"},
		{in.clientID, "clientID"}, {in.tokens, "tokens"}, {in.secrets, "secrets"},
	} {
		if f.on {
			on = append(on, f.name)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, "+")
}

const (
	idClientID = "client-1"
	idUAMI     = "uami-1"
	idSP       = "sp-1"
	idSPSecret = "sp-secret" //nolint:gosec // test data
	idWIToken  = "wi-token"  //nolint:gosec // test data
	idIBToken  = "ib-token"  //nolint:gosec // test data
)

// upstreamOutcome is what Azure's provider v1.8.2 does with some inputs: the identity it uses, or
// the problems that stop the mount (as our messages word them), and which step of
// IdentityPrecedence decided (1-based).
type upstreamOutcome struct {
	identity Identity
	errs     []string
	step     int
}

// Our error messages, one per problem.
const (
	errOneMode     = "only one identity mode can be enabled at a time"
	errProxyNoID   = `clientID is required when useAzureTokenProxy is "true"`
	errNoIBToken   = `useAzureTokenProxy is "true" but the driver sent no service account token for audience "api://AKSIdentityBinding"`
	errNoWIToken   = `clientID is set but the driver sent no service account token for audience "api://AzureADTokenExchange"`
	errPodIdentity = "usePodIdentity is not supported: aad-pod-identity is retired"
	errNoIdentity  = "no identity configured"
)

// upstream is written from Azure's provider, not from parseIdentity:
//   - pkg/provider/provider.go parses usePodIdentity, useVMManagedIdentity and useAzureTokenProxy
//     and picks one auth.IdentityMode; more than one "true" is refused ("only one identity mode can
//     be enabled at a time", as its chart's ValidatingAdmissionPolicy words it).
//   - With useAzureTokenProxy it reads the token for api://AKSIdentityBinding
//     (auth.ParseIdentityBindingToken); otherwise, whenever clientID is set, the token for
//     api://AzureADTokenExchange (auth.ParseServiceAccountToken), and a missing token fails the mount
//     whatever the mode ("failed to parse workload identity tokens").
//   - auth.NewConfig reads the nodePublishSecretRef credentials only in IdentityModeNone without a
//     workload identity (clientID and token), and fails without them.
//   - auth.Config.GetCredential: IdentityModePodIdentity → aad-pod-identity (NMI);
//     IdentityModeVMManagedIdentity → the managed identity of userAssignedIdentityID (clientID
//     ignored); IdentityModeAzureTokenProxy → identity binding, clientID and token required;
//     IdentityModeNone → workload identity if clientID and token, else the service principal.
//
// Where upstream stops at its first problem, we report every problem: errs lists all of them.
// The one deliberate difference: pod identity is refused (aad-pod-identity is retired) at the
// place upstream would use it.
func upstream(in identityInputs) upstreamOutcome {
	modes := 0
	for _, on := range []bool{in.podIdentity, in.vmManagedIdentity, in.tokenProxy} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		o := upstreamOutcome{errs: []string{errOneMode}, step: 1}
		if in.podIdentity {
			o.errs = append(o.errs, errPodIdentity)
		}
		return o
	}
	if in.tokenProxy {
		o := upstreamOutcome{step: 2}
		if !in.clientID {
			o.errs = append(o.errs, errProxyNoID)
		}
		if !in.tokens {
			o.errs = append(o.errs, errNoIBToken)
		}
		if len(o.errs) == 0 {
			o.identity = Identity{Mode: IdentityBinding, ClientID: idClientID, Token: idIBToken}
		}
		return o
	}
	if in.clientID && !in.tokens {
		o := upstreamOutcome{errs: []string{errNoWIToken}, step: 3}
		if in.podIdentity {
			o.errs = append(o.errs, errPodIdentity)
		}
		return o
	}
	switch {
	case in.podIdentity:
		return upstreamOutcome{errs: []string{errPodIdentity}, step: 4}
	case in.vmManagedIdentity:
		return upstreamOutcome{identity: Identity{Mode: ManagedIdentity, ClientID: idUAMI}, step: 5}
	case in.clientID:
		return upstreamOutcome{identity: Identity{Mode: WorkloadIdentity, ClientID: idClientID, Token: idWIToken}, step: 6}
	case !in.secrets:
		return upstreamOutcome{errs: []string{errNoIdentity}, step: 7}
	}
	return upstreamOutcome{identity: Identity{Mode: ServicePrincipal, ClientID: idSP, ClientSecret: idSPSecret}, step: 7}
}

func identityAttrs(in identityInputs) map[string]string {
	a := map[string]string{UserAssignedIdentityID: idUAMI}
	if in.podIdentity {
		a[UsePodIdentity] = "true"
	}
	if in.vmManagedIdentity {
		a[UseVMManagedIdentity] = "true"
	}
	if in.tokenProxy {
		a[UseAzureTokenProxy] = "true"
	}
	if in.clientID {
		a[ClientID] = idClientID
	}
	if in.tokens {
		b, _ := json.Marshal(map[string]map[string]string{
			WorkloadIdentityAudience: {"token": idWIToken, "expirationTimestamp": "2030-01-01T00:00:00Z"},
			IdentityBindingAudience:  {"token": idIBToken, "expirationTimestamp": "2030-01-01T00:00:00Z"},
		})
		a[ServiceAccountTokens] = string(b)
	}
	return a
}

func identitySecrets(in identityInputs) map[string]string {
	if !in.secrets {
		return nil
	}
	return map[string]string{"clientid": idSP, "clientsecret": idSPSecret}
}

// allIdentityInputs is every combination of the six inputs.
func allIdentityInputs() []identityInputs {
	var all []identityInputs
	for bits := 0; bits < 1<<6; bits++ {
		on := func(i int) bool { return bits&(1<<i) != 0 }
		all = append(all, identityInputs{on(0), on(1), on(2), on(3), on(4), on(5)})
	}
	return all
}

// TestIdentityEveryCombination compares parseIdentity with upstream's order for all 64
// combinations of usePodIdentity, useVMManagedIdentity, useAzureTokenProxy, clientID, a token and
// the nodePublishSecretRef secret, and checks that IdentityPrecedence has exactly one rule per
// step and that every rule decides at least one combination.
func TestIdentityEveryCombination(t *testing.T) {
	t.Parallel()
	steps := map[int]int{}
	for _, in := range allIdentityInputs() {
		want := upstream(in)
		steps[want.step]++
		t.Run(in.String(), func(t *testing.T) {
			t.Parallel()
			got, errs := parseIdentity(identityAttrs(in), identitySecrets(in))
			if len(want.errs) == 0 {
				if len(errs) > 0 {
					t.Fatalf("parseIdentity refused the mount, upstream uses %s: %v", want.identity.Mode, errs)
				}
				if diff := cmp.Diff(want.identity, got); diff != "" {
					t.Errorf("identity (-upstream +got):\n%s", diff)
				}
				return
			}
			if len(errs) == 0 {
				t.Fatalf("parseIdentity chose %s, upstream refuses the mount (%q)", got, want.errs)
			}
			msg := fmt.Sprint(errs)
			for _, w := range want.errs {
				if !strings.Contains(msg, w) {
					t.Errorf("errors %q lack %q", msg, w)
				}
			}
			if len(errs) != len(want.errs) {
				t.Errorf("got %d problems %q, want %d (%q)", len(errs), msg, len(want.errs), want.errs)
			}
		})
	}
	rules := IdentityPrecedence()
	for i := range rules {
		if steps[i+1] == 0 {
			t.Errorf("IdentityPrecedence rule %d (%q) decides no combination", i+1, rules[i].When)
		}
	}
	if len(steps) != len(rules) {
		t.Errorf("upstream's order has %d steps, IdentityPrecedence %d rules", len(steps), len(rules))
	}
}

// TestIdentityThroughParse runs a few combinations through Parse, the way the driver's request
// arrives, including upstream's known difference from our old order: clientID with
// useVMManagedIdentity uses the managed identity.
func TestIdentityThroughParse(t *testing.T) {
	t.Parallel()
	tokens := func(aud ...string) string {
		m := map[string]map[string]string{}
		for _, a := range aud {
			m[a] = map[string]string{"token": "tok-for-" + a}
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name    string
		attrs   map[string]string
		secrets string
		want    Identity
		errs    []string
	}{
		{
			name:  "clientID with useVMManagedIdentity uses the managed identity",
			attrs: map[string]string{ClientID: "app", UseVMManagedIdentity: "true", UserAssignedIdentityID: "mi", ServiceAccountTokens: tokens(WorkloadIdentityAudience)},
			want:  Identity{Mode: ManagedIdentity, ClientID: "mi"},
		},
		{
			name:  "identity binding takes the AKSIdentityBinding token, not the workload identity one",
			attrs: map[string]string{ClientID: " uami ", UseAzureTokenProxy: "TRUE", ServiceAccountTokens: tokens(WorkloadIdentityAudience, IdentityBindingAudience)},
			want:  Identity{Mode: IdentityBinding, ClientID: "uami", Token: "tok-for-" + IdentityBindingAudience},
		},
		{
			name:    "identity binding ignores the nodePublishSecretRef secret",
			attrs:   map[string]string{ClientID: "uami", UseAzureTokenProxy: "true", ServiceAccountTokens: tokens(IdentityBindingAudience)},
			secrets: `{"clientid":"sp","clientsecret":"s"}`,
			want:    Identity{Mode: IdentityBinding, ClientID: "uami", Token: "tok-for-" + IdentityBindingAudience},
		},
		{
			name:  "identity binding with only a workload identity token",
			attrs: map[string]string{ClientID: "uami", UseAzureTokenProxy: "true", ServiceAccountTokens: tokens(WorkloadIdentityAudience)},
			errs:  []string{errNoIBToken, "add {audience: api://AKSIdentityBinding} to tokenRequests"},
		},
		{
			name:  "workload identity with only an identity binding token",
			attrs: map[string]string{ClientID: "app", ServiceAccountTokens: tokens(IdentityBindingAudience)},
			errs:  []string{errNoWIToken},
		},
		{
			name:  "useAzureTokenProxy false is no mode",
			attrs: map[string]string{ClientID: "app", UseAzureTokenProxy: "false", ServiceAccountTokens: tokens(WorkloadIdentityAudience)},
			want:  Identity{Mode: WorkloadIdentity, ClientID: "app", Token: "tok-for-" + WorkloadIdentityAudience},
		},
		{
			name:  "all three flags",
			attrs: map[string]string{UsePodIdentity: "true", UseVMManagedIdentity: "true", UseAzureTokenProxy: "true"},
			errs:  []string{"usePodIdentity, useVMManagedIdentity and useAzureTokenProxy are all \"true\"", errPodIdentity},
		},
		{
			name:  "bad useAzureTokenProxy",
			attrs: map[string]string{UseAzureTokenProxy: "on"},
			errs:  []string{`useAzureTokenProxy "on" must be "true" or "false"`},
		},
		{
			name:    "partial secret is ignored with workload identity",
			attrs:   map[string]string{ClientID: "app", ServiceAccountTokens: tokens(WorkloadIdentityAudience)},
			secrets: `{"clientid":"sp"}`,
			want:    Identity{Mode: WorkloadIdentity, ClientID: "app", Token: "tok-for-" + WorkloadIdentityAudience},
		},
		{
			name:    "partial secret alone",
			secrets: `{"clientsecret":"s"}`,
			errs:    []string{"nodePublishSecretRef secret has no clientid:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := map[string]string{KeyVaultName: "kv-demo", TenantID: "t", Objects: objectsYAML("objectName: a\nobjectType: secret")}
			for k, v := range tt.attrs {
				a[k] = v
			}
			b, _ := json.Marshal(a)
			got, err := Parse(string(b), tt.secrets, "420", Defaults{})
			if len(tt.errs) > 0 {
				if err == nil {
					t.Fatalf("Parse chose %s, want an error", got.Identity)
				}
				for _, w := range tt.errs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Identity); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdentityModeStrings(t *testing.T) {
	t.Parallel()
	for _, m := range []IdentityMode{WorkloadIdentity, ManagedIdentity, ServicePrincipal, IdentityBinding} {
		if m.String() == "unknown" {
			t.Errorf("mode %d has no name", m)
		}
	}
	if got := IdentityBinding.TokenAudience(); got != "api://AKSIdentityBinding" {
		t.Errorf("IdentityBinding audience = %q", got)
	}
	if got := WorkloadIdentity.TokenAudience(); got != "api://AzureADTokenExchange" {
		t.Errorf("WorkloadIdentity audience = %q", got)
	}
	if got := ManagedIdentity.TokenAudience(); got != "" {
		t.Errorf("ManagedIdentity audience = %q", got)
	}
	id := Identity{Mode: IdentityBinding, ClientID: "uami", Token: "secret-token"}
	for _, s := range []string{id.String(), fmt.Sprintf("%v %+v %#v", id, id, id)} {
		if strings.Contains(s, "secret-token") {
			t.Errorf("identity prints its token: %s", s)
		}
	}
}

// The README block between these markers is IdentityPrecedenceMarkdown's output.
const (
	readmeBegin = "<!-- BEGIN identity-precedence: generated from config.IdentityPrecedenceMarkdown; pkg/config/identity_test.go checks it -->\n"
	readmeEnd   = "<!-- END identity-precedence -->"
)

// TestREADMEIdentityPrecedence keeps README.md's identity table equal to IdentityPrecedence.
func TestREADMEIdentityPrecedence(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, rest, ok := strings.Cut(readme, readmeBegin)
	if !ok {
		t.Fatalf("README.md has no identity-precedence block; put this between the markers:\n%s%s%s", readmeBegin, IdentityPrecedenceMarkdown(), readmeEnd)
	}
	block, _, ok := strings.Cut(rest, readmeEnd)
	if !ok {
		t.Fatalf("README.md has %q but no %q", strings.TrimSpace(readmeBegin), readmeEnd)
	}
	if diff := cmp.Diff(IdentityPrecedenceMarkdown(), block); diff != "" {
		t.Errorf("README.md identity table is out of date (-generated +README):\n%s", diff)
	}
}
