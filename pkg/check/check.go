// Package check checks SecretProviderClasses before a pod mounts them: it validates every
// parameter with the provider's own parser, explains what the provider will do and what Azure must
// have for it (the identity chosen, and why, by the provider's own precedence; the federated
// credential; the roles on the vault; the files), and with Live performs the mount with the
// provider's own pipeline, printing per object what a pod would get, never a value.
package check

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/config"
)

// Options configure a check. The zero value of a field is its default unless it says otherwise.
type Options struct {
	// Files are the manifests to read: YAML (several documents, or a List) or JSON; "-" is Stdin;
	// a directory stands for its .yaml, .yml and .json files.
	Files []string
	Stdin io.Reader

	// Namespace and ServiceAccount are those of the pods that mount the SecretProviderClasses
	// (default: the SecretProviderClass's namespace, else "default"; and "default").
	Namespace, ServiceAccount string
	// Issuer is the cluster's OIDC issuer URL, for the federated credential (default: the token's
	// issuer with AsWorkloadIdentity, else what Kubectl reads from the cluster).
	Issuer string
	// Kubectl is the kubectl binary that reads the issuer and, with Kube, the cluster; "" never
	// runs it. KubeContext selects its context ("" = the current one).
	Kubectl, KubeContext string
	// TokenAudiences are the audiences of the service account tokens the driver sends (the
	// tokenRequests of its CSIDriver); nil means the chart's: both of the provider's audiences.
	TokenAudiences []string

	// Defaults, ConstructPEMChain and WriteCertAndKeyInSeparateFiles are the provider's flags
	// --cloud-name, --construct-pem-chain and --write-cert-and-key-in-separate-files.
	Defaults                       config.Defaults
	ConstructPEMChain              bool
	WriteCertAndKeyInSeparateFiles bool

	// Live reads every object with the provider's Mount pipeline: as the operator's own Azure
	// login, or with AsWorkloadIdentity as the workload identity of the service account token in
	// TokenFile (ClientID default: the SecretProviderClass's clientID).
	Live               bool
	AsWorkloadIdentity bool
	TokenFile          string
	ClientID           string
	// TenantID replaces the SecretProviderClass's tenant.
	TenantID string
	// WriteDir receives the files of each successful live mount, in a folder per
	// SecretProviderClass ("" = nothing is written).
	WriteDir string
	// Timeout bounds each live mount (default 30s).
	Timeout time.Duration

	// Kube reads the SecretProviderClasses, and the pods that mount them, from the cluster with
	// Kubectl, and checks each pod's use of its SecretProviderClass.
	Kube bool
}

// Report is the outcome of a check.
type Report struct {
	// OK is true when every SecretProviderClass is valid (and, with Live, mounted).
	OK      bool      `json:"ok"`
	Classes []*Result `json:"secretProviderClasses"`
	// Problems are those of inputs that are not one SecretProviderClass (unreadable files).
	Problems []Problem `json:"problems,omitempty"`
	// Skipped lists the documents that are not SecretProviderClasses of this provider.
	Skipped []string `json:"skipped,omitempty"`
}

// Problem is one thing to fix, where it is.
type Problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	case p.File != "":
		return p.File + ": " + p.Message
	}
	return p.Message
}

// Result is the check of one SecretProviderClass (with Kube: as one pod mounts it).
type Result struct {
	File      string `json:"file,omitempty"`
	Line      int    `json:"line,omitempty"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Pod is the pod checked with it (Kube), as namespace/name.
	Pod            string `json:"pod,omitempty"`
	ServiceAccount string `json:"serviceAccount"`
	// Assumed is set when neither the options, a pod nor a token said who the pods run as.
	Assumed  bool         `json:"serviceAccountAssumed,omitempty"`
	OK       bool         `json:"ok"`
	Problems []Problem    `json:"problems,omitempty"`
	Warnings []string     `json:"warnings,omitempty"`
	Explain  *Explanation `json:"explain,omitempty"`
	Live     *Live        `json:"live,omitempty"`
}

// Run checks every SecretProviderClass of o.Files (or, with o.Kube, of the cluster).
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	c := &checker{opts: o}
	var targets []target
	rep := &Report{OK: true}
	if o.Kube {
		t, skipped, problems, err := c.kubeTargets(ctx)
		if err != nil {
			return nil, err
		}
		targets, rep.Skipped, rep.Problems = t, skipped, problems
	} else {
		sources, err := readManifests(o.Files, o.Stdin)
		if err != nil {
			return nil, err
		}
		skipped := map[string]int{}
		for _, s := range sources {
			if s.Problem != nil {
				rep.Problems = append(rep.Problems, *s.Problem)
			}
			for _, spc := range s.SPCs {
				targets = append(targets, target{spc: spc})
			}
			for k, n := range s.Skipped {
				skipped[k] += n
			}
		}
		rep.Skipped = sortedSkips(skipped)
	}
	if o.Live {
		var err error
		if c.live, err = newLiveRun(o); err != nil {
			return nil, err
		}
	}
	for _, t := range targets {
		rep.Classes = append(rep.Classes, c.check(ctx, t))
	}
	if len(rep.Problems) > 0 {
		rep.OK = false
	}
	for _, r := range rep.Classes {
		rep.OK = rep.OK && r.OK
	}
	return rep, nil
}

func (o *Options) validate() error {
	var errs []error
	if len(o.Files) == 0 && !o.Kube {
		errs = append(errs, errors.New("no SecretProviderClass to check: give -f FILE (or --kube)"))
	}
	if len(o.Files) > 0 && o.Kube {
		errs = append(errs, errors.New("-f and --kube do not go together: check files, or the cluster"))
	}
	if o.Kube && o.Kubectl == "" {
		errs = append(errs, errors.New("--kube needs kubectl"))
	}
	if !o.Live {
		for _, f := range []struct {
			flag string
			set  bool
		}{{"--as-workload-identity", o.AsWorkloadIdentity}, {"--token-file", o.TokenFile != ""}, {"--client-id", o.ClientID != ""},
			{"--tenant-id", o.TenantID != ""}, {"--write-dir", o.WriteDir != ""}} {
			if f.set {
				errs = append(errs, fmt.Errorf("%s goes with --live", f.flag))
			}
		}
	}
	if o.AsWorkloadIdentity && o.TokenFile == "" {
		errs = append(errs, errors.New("--as-workload-identity needs --token-file: a service account token for audience "+
			config.WorkloadIdentityAudience+" (kubectl create token SERVICE_ACCOUNT -n NAMESPACE --audience "+config.WorkloadIdentityAudience+")"))
	}
	if !o.AsWorkloadIdentity && (o.TokenFile != "" || o.ClientID != "") {
		errs = append(errs, errors.New("--token-file and --client-id go with --as-workload-identity"))
	}
	if o.Defaults.CloudName != "" {
		if c, err := config.ParseCloudName(o.Defaults.CloudName); err == nil {
			o.Defaults.CloudName = c
		} else {
			errs = append(errs, fmt.Errorf("--cloud-name %w", err))
		}
	}
	if o.TokenAudiences == nil {
		o.TokenAudiences = []string{config.WorkloadIdentityAudience, config.IdentityBindingAudience}
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return errors.Join(errs...)
}

// checker holds what one Run learns once for every SecretProviderClass.
type checker struct {
	opts Options
	live *liveRun

	issuer      string // the cluster's OIDC issuer, once looked up
	issuerError string // why it could not be
	issuerDone  bool
}

// target is one SecretProviderClass to check, with the pod that mounts it when known (Kube).
type target struct {
	spc *spc
	pod *podUse
	// pods counts the pods that mount it as pod does (replicas).
	pods int
}

// podUse is how one pod mounts a SecretProviderClass.
type podUse struct {
	Namespace, Name, ServiceAccount string
	// NodePublishSecretRef is the name of the Secret of the pod's CSI volume ("" = none).
	NodePublishSecretRef string
}

// A placeholder pod for the attributes the driver adds when none is known.
const (
	defaultPodName = "akv-check"
	defaultPodUID  = "00000000-0000-4000-8000-000000000000"
)

// driverRequest is what the driver sends the provider for a pod mounting s: its parameters with
// the pod's details and service account tokens added (the driver's keys replace the
// SecretProviderClass's), the nodePublishSecretRef Secret, and the default file mode.
type driverRequest struct {
	attributes map[string]string
	secrets    map[string]string
	pod        config.Pod
}

// request is what the driver sends for a pod mounting t's SecretProviderClass.
// token is the service account token for config.WorkloadIdentityAudience ("" = a placeholder); the
// pod's namespace and service account are, in order: the pod's (Kube), Options', the token's
// subject's, and the SecretProviderClass's namespace and "default".
func (c *checker) request(t target, token string) driverRequest {
	s := t.spc
	pod := config.Pod{Name: defaultPodName, UID: defaultPodUID, Namespace: c.opts.Namespace, ServiceAccount: c.opts.ServiceAccount}
	if claims, ok := auth.ReadClaims(token); ok {
		if ns, sa, ok := strings.Cut(strings.TrimPrefix(claims.Subject, "system:serviceaccount:"), ":"); ok {
			if pod.Namespace == "" && pod.ServiceAccount == "" {
				pod.Namespace, pod.ServiceAccount = ns, sa
			}
		}
	}
	if pod.Namespace == "" {
		pod.Namespace = s.Namespace
	}
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	if pod.ServiceAccount == "" {
		pod.ServiceAccount = "default"
	}
	if t.pod != nil {
		pod = config.Pod{Namespace: t.pod.Namespace, Name: t.pod.Name, UID: defaultPodUID, ServiceAccount: t.pod.ServiceAccount}
	}
	attrs := make(map[string]string, len(s.Parameters)+8)
	for k, v := range s.Parameters {
		attrs[k] = v
	}
	attrs[config.PodName] = pod.Name
	attrs[config.PodNamespace] = pod.Namespace
	attrs[config.PodUID] = pod.UID
	attrs[config.ServiceAccountName] = pod.ServiceAccount
	attrs["csi.storage.k8s.io/ephemeral"] = "false"
	attrs["secretProviderClass"] = s.Name
	if len(c.opts.TokenAudiences) > 0 {
		tokens := map[string]map[string]string{}
		for _, aud := range c.opts.TokenAudiences {
			tok := token
			if tok == "" || aud != config.WorkloadIdentityAudience {
				tok = placeholderToken(pod, aud)
			}
			tokens[aud] = map[string]string{"token": tok, "expirationTimestamp": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
		}
		b, _ := json.Marshal(tokens)
		attrs[config.ServiceAccountTokens] = string(b)
	}
	// The Secret of the pod's nodePublishSecretRef: assumed present, unless the pod is known.
	var secrets map[string]string
	if t.pod == nil || t.pod.NodePublishSecretRef != "" {
		secrets = map[string]string{"clientid": secretRefClientID, "clientsecret": "placeholder"}
	}
	return driverRequest{attributes: attrs, secrets: secrets, pod: pod}
}

// secretRefClientID stands for the client ID in the nodePublishSecretRef Secret, unknown here.
const secretRefClientID = "<clientid from the nodePublishSecretRef Secret>"

// placeholderToken is an unsigned token of the pod's service account, for the parser (which reads,
// and never verifies, it) when no real one is at hand.
func placeholderToken(pod config.Pod, audience string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"iss": "https://issuer.invalid", "sub": "system:serviceaccount:" + pod.Namespace + ":" + pod.ServiceAccount,
		"aud": []string{audience}, "exp": time.Now().Add(time.Hour).Unix()})
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(claims) + ".unsigned"
}

// parse runs the provider's parser on what the driver would send.
func (r driverRequest) parse(d config.Defaults) (config.MountConfig, error) {
	a, err := json.Marshal(r.attributes)
	if err != nil {
		return config.MountConfig{}, err
	}
	var s []byte
	if r.secrets != nil {
		if s, err = json.Marshal(r.secrets); err != nil {
			return config.MountConfig{}, err
		}
	}
	return config.Parse(string(a), string(s), "420", d)
}

// check validates, explains and (Live) mounts one SecretProviderClass.
func (c *checker) check(ctx context.Context, t target) *Result {
	s := t.spc
	token := ""
	if c.live != nil {
		token = c.live.token // the pods' service account is the token's
	}
	req := c.request(t, token)
	res := &Result{File: s.File, Line: s.Line, Name: s.Name, Namespace: req.pod.Namespace, ServiceAccount: req.pod.ServiceAccount,
		Assumed: t.pod == nil && token == "" && c.opts.ServiceAccount == "", Problems: append([]Problem(nil), s.Problems...)}
	switch {
	case t.pod != nil && t.pods > 1:
		res.Pod = fmt.Sprintf("%s/%s (and %d more like it)", t.pod.Namespace, t.pod.Name, t.pods-1)
	case t.pod != nil:
		res.Pod = t.pod.Namespace + "/" + t.pod.Name
	case c.opts.Kube:
		res.Warnings = append(res.Warnings, "no pod mounts it: checked for service account "+req.pod.ServiceAccount)
	}
	cfg, err := req.parse(c.opts.Defaults)
	res.Warnings = append(res.Warnings, cfg.Warnings...) // what the provider mounts but logs as a likely mistake
	if err != nil {
		for _, msg := range messages(err) {
			res.Problems = append(res.Problems, Problem{File: s.File, Line: s.lineOf(msg), Message: msg})
		}
	} else {
		res.Explain = c.explain(ctx, t, req, cfg, res)
		res.Problems = append(res.Problems, secretObjectProblems(s, cfg, c.opts.WriteCertAndKeyInSeparateFiles)...)
	}
	sort.SliceStable(res.Problems, func(a, b int) bool { return res.Problems[a].Line < res.Problems[b].Line })
	res.OK = len(res.Problems) == 0
	if res.OK && c.live != nil {
		res.Live = c.live.mount(ctx, c, t)
		res.OK = res.Live.OK
	}
	return res
}

// messages splits the parser's joined error into its problems.
func messages(err error) []string {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, messages(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

var objectIndexRE = regexp.MustCompile(`^objects\[(\d+)\]`)

// lineOf finds where a parser message points: the entry of objects[i], or the parameter the
// message starts with, else the parameters.
func (s *spc) lineOf(msg string) int {
	if m := objectIndexRE.FindStringSubmatch(msg); m != nil {
		if i, err := strconv.Atoi(m[1]); err == nil && i < len(s.objectLines) {
			return s.objectLines[i]
		}
		return s.paramLineOr(config.Objects)
	}
	keys := make([]string, 0, len(s.paramLines))
	for k := range s.paramLines {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return len(keys[a]) > len(keys[b]) })
	for _, k := range keys {
		if strings.HasPrefix(msg, k+" ") || strings.HasPrefix(msg, k+":") {
			return s.paramLines[k]
		}
	}
	if s.paramsLine > 0 {
		return s.paramsLine
	}
	return s.Line
}

func (s *spc) paramLineOr(key string) int {
	if l, ok := s.paramLines[key]; ok {
		return l
	}
	if s.paramsLine > 0 {
		return s.paramsLine
	}
	return s.Line
}

// secretObjectProblems checks spec.secretObjects against the files the mount writes: the driver
// syncs a Kubernetes Secret from files of the mount, and fails the sync for a file it lacks.
func secretObjectProblems(s *spc, cfg config.MountConfig, separateFiles bool) []Problem {
	files := map[string]bool{}
	var names []string
	for _, o := range cfg.Objects {
		for _, p := range o.Paths() {
			files[p] = true
			names = append(names, p)
			if separateFiles && o.Type == config.TypeSecret {
				files[p+".crt"], files[p+".key"] = true, true // when the secret is a certificate's
			}
		}
	}
	var out []Problem
	for i, so := range s.SecretObjects {
		keys := map[string]bool{}
		for j, d := range so.Data {
			keys[d.Key] = true
			if d.ObjectName != "" && !files[d.ObjectName] {
				out = append(out, Problem{File: s.File, Line: d.Line, Message: fmt.Sprintf(
					"secretObjects[%d].data[%d].objectName %q is not a file of this mount (it writes %s): use a file name, that is the objectAlias, else the objectName",
					i, j, d.ObjectName, strings.Join(quoteAll(names), ", "))})
			}
		}
		if so.Type == "kubernetes.io/tls" && (!keys["tls.crt"] || !keys["tls.key"]) {
			out = append(out, Problem{File: s.File, Line: so.Line, Message: fmt.Sprintf(
				"secretObjects[%d] (%q) has type kubernetes.io/tls, which needs the keys tls.crt and tls.key in data", i, so.SecretName)})
		}
	}
	return out
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
