// Command akv-check checks SecretProviderClasses before a pod mounts them: it validates every
// parameter with the provider's own parser, explains what the provider will do and what Azure must
// have for it, and with --live performs the mount with the provider's own pipeline, printing per
// object what a pod would get, never a value.
//
// Exit status: 0 when every SecretProviderClass is valid (and, with --live, mounted); 1 when any
// is not; 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/akv-csi/provider/pkg/check"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/version"
)

const usage = `akv-check: check SecretProviderClasses of the Azure Key Vault provider before a pod mounts them.

  akv-check -f spc.yaml [-f more.yaml ...] [--namespace NS --service-account SA] [-o json]
  akv-check -f spc.yaml --live                        # read every object as your own Azure login (az login)
  akv-check -f spc.yaml --live --as-workload-identity --token-file TOKEN [--client-id ID] [--tenant-id ID]
  akv-check --kube [--namespace NS]                    # the cluster's SecretProviderClasses and the pods that mount them

Exit status: 0 all valid (and mounted, with --live), 1 a problem, 2 a usage error.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func parseFlags(args []string, stderr io.Writer) (check.Options, string, bool, error) {
	fs := flag.NewFlagSet("akv-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var o check.Options
	var files stringList
	var output, audiences, cloudName string
	fs.Var(&files, "f", "SecretProviderClass manifest: YAML (several documents, or a List) or JSON; - reads standard input; a directory, its .yaml, .yml and .json files (repeatable)")
	fs.Var(&files, "filename", "same as -f")
	fs.StringVar(&output, "o", "text", "output: text or json")
	fs.StringVar(&output, "output", "text", "same as -o")
	fs.StringVar(&o.Namespace, "namespace", "", "namespace of the pods that mount the SecretProviderClasses (default: theirs, else default); with --kube, the namespace to read")
	fs.StringVar(&o.ServiceAccount, "service-account", "", "service account of the pods (default: default)")
	fs.StringVar(&o.Issuer, "issuer", "", "the cluster's OIDC issuer URL, for the federated credential (default: the token's with --as-workload-identity, else kubectl get --raw /.well-known/openid-configuration)")
	fs.StringVar(&o.Kubectl, "kubectl", "kubectl", "the kubectl to run for the issuer and --kube (empty: never run kubectl)")
	fs.StringVar(&o.KubeContext, "context", "", "the kube context for kubectl (default: the current one)")
	fs.StringVar(&audiences, "token-audiences", config.WorkloadIdentityAudience+","+config.IdentityBindingAudience,
		"audiences of the service account tokens the driver sends: its CSIDriver's tokenRequests (default: the chart's; empty: none)")
	fs.StringVar(&cloudName, "cloud-name", config.AzurePublicCloud, "the provider's --cloud-name: the cloud of a SecretProviderClass that sets no cloudName")
	fs.BoolVar(&o.ConstructPEMChain, "construct-pem-chain", true, "the provider's --construct-pem-chain")
	fs.BoolVar(&o.WriteCertAndKeyInSeparateFiles, "write-cert-and-key-in-separate-files", false, "the provider's --write-cert-and-key-in-separate-files")
	fs.BoolVar(&o.Live, "live", false, "perform the mount: read every object from Key Vault with the provider's pipeline and print what each gives (never a value)")
	fs.BoolVar(&o.AsWorkloadIdentity, "as-workload-identity", false, "with --live: read as the workload identity of --token-file, as the pod does, instead of your own Azure login")
	fs.StringVar(&o.TokenFile, "token-file", "", "with --as-workload-identity: a service account token for audience "+config.WorkloadIdentityAudience+
		" (kubectl create token SA -n NS --audience "+config.WorkloadIdentityAudience+" > FILE)")
	fs.StringVar(&o.ClientID, "client-id", "", "with --as-workload-identity: the client ID to read as (default: the SecretProviderClass's clientID)")
	fs.StringVar(&o.TenantID, "tenant-id", "", "with --live: the tenant to read in (default: the SecretProviderClass's tenantId)")
	fs.StringVar(&o.WriteDir, "write-dir", "", "with --live: write the files of each mount under DIR/NAMESPACE/NAME, as the driver would (default: nothing is written)")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "with --live: how long one mount may take")
	fs.BoolVar(&o.Kube, "kube", false, "check the cluster's SecretProviderClasses and the pods that mount them, with kubectl")
	showVersion := fs.Bool("version", false, "print the build information as JSON and exit")
	if err := fs.Parse(args); err != nil {
		return o, "", false, err
	}
	files = append(files, fs.Args()...)
	o.Files = files
	o.Defaults.CloudName = cloudName
	o.TokenAudiences = []string{}
	for _, a := range strings.Split(audiences, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.TokenAudiences = append(o.TokenAudiences, a)
		}
	}
	var errs []error
	if output != "text" && output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: use text or json", output))
	}
	if o.Kube && o.ServiceAccount != "" {
		errs = append(errs, errors.New("--service-account does not go with --kube: each pod's service account is used"))
	}
	return o, output, *showVersion, errors.Join(errs...)
}

// run checks, writes the report and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, output, showVersion, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if showVersion {
		fmt.Fprintln(stdout, version.JSON())
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "akv-check:", err)
		return 2
	}
	o.Stdin = stdin
	rep, err := check.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "akv-check:", err)
		return 2
	}
	write := check.WriteText
	if output == "json" {
		write = check.WriteJSON
	}
	if err := write(stdout, rep); err != nil {
		fmt.Fprintln(stderr, "akv-check:", err)
		return 2
	}
	if !rep.OK {
		return 1
	}
	return 0
}
