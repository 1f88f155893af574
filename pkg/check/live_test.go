package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/provider"
)

const liveSPC = "testdata/spc/live.yaml"

// tokenFile writes a service account token of namespace/sa, signed by the emulator's issuer (as
// kubectl create token would write one), and returns its path.
func tokenFile(t *testing.T, namespace, sa string) (string, string) {
	t.Helper()
	tok, err := em.SignServiceAccountToken(namespace, sa, config.WorkloadIdentityAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tok
}

func liveOptions(files ...string) Options {
	o := offline(files...)
	o.Issuer = "" // the token's
	o.Live = true
	return o
}

// providerMount mounts liveSPC's parameters as the driver would send them for pod
// default/akv-check, with a provider of its own (not the check's), and returns its outcome.
func providerMount(t *testing.T, token string, overrides map[string]string) (provider.Result, error) {
	t.Helper()
	attrs := liveParameters(t)
	tokens, _ := json.Marshal(map[string]map[string]string{config.WorkloadIdentityAudience: {"token": token}})
	for k, v := range map[string]string{
		config.PodName: "akv-check", config.PodNamespace: "default", config.PodUID: defaultPodUID,
		config.ServiceAccountName: "app-sa", config.ServiceAccountTokens: string(tokens),
	} {
		attrs[k] = v
	}
	for k, v := range overrides {
		attrs[k] = v
	}
	a, _ := json.Marshal(attrs)
	cfg, err := config.Parse(string(a), "", "420", config.Defaults{CloudName: config.AzurePublicCloud})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return provider.New(provider.Options{ConstructPEMChain: true}).Mount(ctx, cfg)
}

func statuses(l *Live) map[string]string {
	out := map[string]string{}
	for _, o := range l.Objects {
		out[o.Object] = o.Status
	}
	return out
}

// TestLiveWorkloadIdentity mounts liveSPC as its workload identity, with a token file, through the
// proxy route: OK rows for what the identity may read, a denied row for the keys, a not-found row,
// each failure with the words the provider gives a pod, and no value anywhere.
func TestLiveWorkloadIdentity(t *testing.T) {
	t.Parallel()
	file, token := tokenFile(t, "default", "app-sa")
	o := liveOptions(liveSPC)
	o.AsWorkloadIdentity, o.TokenFile = true, file
	rep, text, js := runCheck(t, o)
	if rep.OK || len(rep.Classes) != 1 {
		t.Fatalf("want one SecretProviderClass whose mount fails:\n%s", text)
	}
	live := rep.Classes[0].Live
	if live == nil {
		t.Fatalf("no live mount:\n%s", text)
	}
	want := map[string]string{
		"secret/db-password": "OK", "secret/db-password (2 newest versions)": "OK", "secret/api-key": "OK",
		"key/signing-rsa": "DENIED", "key/hsm-ec": "DENIED", "cert/web-tls": "OK", "secret/web-tls": "OK",
		"secret/web-tls (pfx, base64)": "OK", "secret/missing": "NOT FOUND",
	}
	if diff := cmp.Diff(want, statuses(live)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s\n%s", diff, text)
	}

	// The provider's own words, from a mount of the same request by a provider of its own.
	_, perr := providerMount(t, token, nil)
	var me *provider.MountError
	if !errors.As(perr, &me) {
		t.Fatalf("the provider's mount: %v", perr)
	}
	if live.MountError != perr.Error() {
		t.Errorf("mount error:\n got %s\nwant %s", live.MountError, perr.Error())
	}
	failed := 0
	for _, row := range live.Objects {
		if row.Status == "OK" {
			if len(row.Files) == 0 || row.Error != "" {
				t.Errorf("%s: OK without files, or with an error: %+v", row.Object, row)
			}
			continue
		}
		failed++
		if row.Error == "" || !strings.Contains(perr.Error(), row.Error) {
			t.Errorf("%s: the row's error %q is not the provider's (%s)", row.Object, row.Error, perr)
		}
	}
	if failed != len(me.Objects) {
		t.Errorf("%d failed rows, the provider failed %d objects", failed, len(me.Objects))
	}
	for _, w := range []string{`get key "signing-rsa" (version latest) in vault "kv-check": 403 Forbidden`,
		`"Key Vault Crypto User" role on vault "kv-check"`, `get secret "missing" (version latest) in vault "kv-check": 404`} {
		if !strings.Contains(text, w) {
			t.Errorf("the output lacks %q:\n%s", w, text)
		}
	}
	checkNoValues(t, text, js)
	golden(t, "live-workload-identity.txt", strings.ReplaceAll(text, file, "TOKEN_FILE"))
}

func checkNoValues(t *testing.T, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		for _, v := range secretValues() {
			if strings.Contains(out, v) {
				t.Errorf("the output holds the secret value %q", v)
			}
		}
		for _, marker := range []string{"BEGIN", "eyJ", "MII"} {
			if strings.Contains(out, marker) {
				t.Errorf("the output holds %q (key, certificate or token material)", marker)
			}
		}
	}
}

// TestLiveWriteDir mounts as an identity that may read everything through the custom-cloud route
// (AzureStackCloud and the emulator's environment file) and writes the files: the same bytes and
// modes the provider returns.
func TestLiveWriteDir(t *testing.T) {
	t.Parallel()
	file, token := tokenFile(t, "default", "app-sa")
	dir := t.TempDir()
	o := liveOptions("-")
	o.AsWorkloadIdentity, o.TokenFile, o.ClientID, o.WriteDir = true, file, wiAll, dir
	manifest, err := os.ReadFile(liveSPC)
	if err != nil {
		t.Fatal(err)
	}
	stack := strings.Replace(string(manifest), "    keyvaultName: kv-check\n",
		"    keyvaultName: kv-check\n    cloudName: AzureStackCloud\n    cloudEnvFileName: "+cloudEnvFile+"\n", 1)
	stack = strings.Replace(stack, "        - |\n          objectName: missing\n          objectType: secret\n", "", 1)
	o.Stdin = strings.NewReader(stack)
	rep, text, _ := runCheck(t, o)
	if !rep.OK {
		t.Fatalf("the mount failed:\n%s", text)
	}
	live := rep.Classes[0].Live
	if !strings.Contains(live.As, "workload identity (client ID "+wiAll+")") || !strings.Contains(live.As, "the pod reads as workload identity (client ID "+wiApp+")") {
		t.Errorf("as: %s", live.As)
	}
	want, err := providerMount(t, token, map[string]string{config.ClientID: wiAll, config.CloudName: config.AzureStackCloud,
		config.CloudEnvFileName: cloudEnvFile, config.Objects: objectsWithout(t, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	written := filepath.Join(dir, "default", "app")
	if live.Wrote != written {
		t.Errorf("wrote to %q, want %q", live.Wrote, written)
	}
	count := 0
	err = filepath.WalkDir(written, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			count++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != len(want.Files) {
		t.Errorf("%d files written, the provider returns %d", count, len(want.Files))
	}
	for _, f := range want.Files {
		got, err := os.ReadFile(filepath.Join(written, f.Path))
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		info, _ := os.Stat(filepath.Join(written, f.Path))
		if !bytes.Equal(got, f.Contents) || info.Mode().Perm() != f.Mode {
			t.Errorf("%s: mode %o, want %o, or other bytes than the provider's", f.Path, info.Mode().Perm(), f.Mode)
		}
	}
}

// objectsWithout is liveSPC's objects parameter without the entry of name.
func objectsWithout(t *testing.T, name string) string {
	t.Helper()
	return strings.Replace(liveParameters(t)[config.Objects], "  - |\n    objectName: "+name+"\n    objectType: secret\n", "", 1)
}

// liveParameters are liveSPC's parameters, read on their own (not by the check).
func liveParameters(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(liveSPC)
	if err != nil {
		t.Fatal(err)
	}
	var spc struct {
		Spec struct {
			Parameters map[string]string `json:"parameters"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &spc); err != nil {
		t.Fatal(err)
	}
	return spc.Spec.Parameters
}

// TestLiveOperatorLogin reads as the operator's Azure CLI login (a fake az on PATH, logged in as
// a service principal that may read secrets only): its refusals are the provider's messages, and
// the output says whose login read.
func TestLiveOperatorLogin(t *testing.T) {
	t.Parallel()
	rep, text, js := runCheck(t, liveOptions(liveSPC))
	live := rep.Classes[0].Live
	if live == nil || rep.OK {
		t.Fatalf("want a failed live mount:\n%s", text)
	}
	if !strings.Contains(live.As, "your Azure CLI login (az), not the pod's workload identity (client ID "+wiApp+")") {
		t.Errorf("as: %s", live.As)
	}
	want := map[string]string{
		"secret/db-password": "OK", "secret/db-password (2 newest versions)": "OK", "secret/api-key": "OK",
		"key/signing-rsa": "DENIED", "key/hsm-ec": "DENIED", "cert/web-tls": "DENIED", "secret/web-tls": "OK",
		"secret/web-tls (pfx, base64)": "OK", "secret/missing": "NOT FOUND",
	}
	if diff := cmp.Diff(want, statuses(live)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s\n%s", diff, text)
	}
	if !strings.Contains(text, `get cert "web-tls" (version latest) in vault "kv-check": 403 Forbidden`) {
		t.Errorf("no denied certificate:\n%s", text)
	}
	checkNoValues(t, text, js)
	golden(t, "live-operator.txt", text)
}

// TestLiveOperatorNotLoggedIn: an Azure CLI not logged in to the vault's tenant stops the mount
// before any read, saying what to run.
func TestLiveOperatorNotLoggedIn(t *testing.T) {
	t.Parallel()
	o := liveOptions(liveSPC)
	o.TenantID = otherTenant
	rep, text, _ := runCheck(t, o)
	live := rep.Classes[0].Live
	if rep.OK || live == nil || len(live.Objects) != 0 {
		t.Fatalf("want a mount that stops before any read:\n%s", text)
	}
	for _, w := range []string{"no Azure login of yours could get a Key Vault token in tenant " + otherTenant, "AADSTS50020", "az login --tenant " + otherTenant} {
		if !strings.Contains(live.MountError, w) {
			t.Errorf("error %q lacks %q", live.MountError, w)
		}
	}
}

// TestLiveTokenOfAnotherServiceAccount: the pods run as team-b/app-sa but the token is
// default/app-sa's: the provider's own refusal.
func TestLiveTokenOfAnotherServiceAccount(t *testing.T) {
	t.Parallel()
	file, _ := tokenFile(t, "default", "app-sa")
	o := liveOptions(liveSPC)
	o.AsWorkloadIdentity, o.TokenFile, o.Namespace, o.ServiceAccount = true, file, "team-b", "app-sa"
	rep, text, _ := runCheck(t, o)
	live := rep.Classes[0].Live
	if rep.OK || live == nil {
		t.Fatalf("want a failed mount:\n%s", text)
	}
	want := `the service account token names "system:serviceaccount:default:app-sa" but pod team-b/akv-check runs as "system:serviceaccount:team-b:app-sa"`
	if !strings.Contains(live.MountError, want) {
		t.Errorf("error %q lacks %q", live.MountError, want)
	}
	for _, row := range live.Objects {
		if row.Status != "NOT READ" {
			t.Errorf("%s: %s, want NOT READ", row.Object, row.Status)
		}
	}
	if !strings.Contains(text, "the mount fails: "+live.MountError) {
		t.Errorf("the text does not give the error:\n%s", text)
	}
}
