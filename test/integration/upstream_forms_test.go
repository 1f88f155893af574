package integration

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
)

// TestUpstreamFormsAgainstTheBinary: every SecretProviderClass form that Azure's provider (v1.8.2)
// mounts, the binary mounts with the same files, modes and versions as the plain form it stands
// for; what is ignored is logged once per mount, naming the field meant.
func TestUpstreamFormsAgainstTheBinary(t *testing.T) {
	b := startBinaryEnv(t, nil, "--cloud-name=azurecloud") // go-autorest's alias, in any case
	const (
		plain = "objectName: plain\nobjectType: secret"
		cert  = "objectName: web-pfx\nobjectType: cert"
		key   = "objectName: rsa\nobjectType: key"
	)
	tests := []struct {
		name      string
		req       mountRequest
		same      mountRequest     // the form it means, whose response must be identical...
		modes     map[string]int32 // ...but for these modes
		warning   []string         // what the log says about it
		noWarning bool
	}{
		{name: "a misspelt field", req: spMount(plain + "\nfilepermission: \"0600\""), same: spMount(plain),
			warning: []string{`field \"filepermission\" is not read by this provider or Azure's and is ignored (closest known field: filePermission)`}},
		{name: "a key beside array", req: withParam(spMount(plain), config.Objects, objects(plain)+"labels: [a]\n"), same: spMount(plain),
			warning: []string{`objects: field \"labels\"`, "closest known field: array"}},
		{name: "objectFormat pem on a cert and a key", req: spMount(cert+"\nobjectFormat: pem", key+"\nobjectFormat: PEM"), same: spMount(cert, key), noWarning: true},
		{name: "filePermission with leading zeros", req: spMount(plain + "\nfilePermission: \"00640\""), same: spMount(plain),
			modes: map[string]int32{"plain": 0o640}, noWarning: true},
		{name: "filePermission with setuid", req: spMount(plain + "\nfilePermission: \"4750\""), same: spMount(plain),
			modes: map[string]int32{"plain": 0o750}, warning: []string{`filePermission \"4750\" has bits beyond 0777`, "the file's mode is 0750"}},
		{name: "cloudName AzureCloud", req: withParam(spMount(plain), config.CloudName, "AzureCloud"), same: spMount(plain), noWarning: true},
		{name: "a negative objectVersionHistory", req: spMount(plain + "\nobjectVersionHistory: -2"), same: spMount(plain),
			warning: []string{`objectVersionHistory -2 is negative: one version is mounted`}},
		// Aliases the driver cleans (path.Clean) are cleaned here, so the response names the file it writes.
		{name: "aliases ./f, a//b and dir/", req: spMount(plain+"\nobjectAlias: ./f", cert+"\nobjectAlias: d//web", key+"\nobjectAlias: k/"),
			same: spMount(plain+"\nobjectAlias: f", cert+"\nobjectAlias: d/web", key+"\nobjectAlias: k"), noWarning: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(b.stderr.String())
			got := mustMount(t, b.client, tt.req)
			want := mustMount(t, b.client, tt.same)
			logged := logUntilSentinel(t, b, before, i)
			for _, f := range want.GetFiles() {
				if m, ok := tt.modes[f.GetPath()]; ok {
					f.Mode = m
				}
			}
			if diff := cmp.Diff(summary(want), summary(got)); diff != "" {
				t.Errorf("files (-as the plain form +got):\n%s", diff)
			}
			if diff := cmp.Diff(versionsOf(want), versionsOf(got)); diff != "" {
				t.Errorf("object versions (-as the plain form +got):\n%s", diff)
			}
			if n := strings.Count(logged, "the SecretProviderClass has settings that are ignored"); tt.noWarning != (n == 0) || n > 1 {
				t.Errorf("%d warnings logged, want %v:\n%s", n, map[bool]string{true: "none", false: "one"}[tt.noWarning], logged)
			}
			for _, w := range tt.warning {
				if !strings.Contains(logged, w) {
					t.Errorf("the log lacks %q:\n%s", w, logged)
				}
			}
		})
	}

	t.Run("an empty array", func(t *testing.T) {
		for _, doc := range []string{"array: []", "array:"} {
			em.ResetCounters()
			// As with Azure's provider, nothing is asked of Entra ID either: the service
			// principal's secret is one it would refuse.
			r := withParam(spMount(plain), config.Objects, doc)
			r.secrets = map[string]string{"clientid": spOK, "clientsecret": "never-checked"}
			resp := mustMount(t, b.client, r)
			if len(resp.GetFiles())+len(resp.GetObjectVersion()) != 0 {
				t.Errorf("%q: %d files, %d versions; want none", doc, len(resp.GetFiles()), len(resp.GetObjectVersion()))
			}
			if c := em.Counters(); c.TokenRequests+c.Challenges+sum(c.KeyVaultGets)+sum(c.KeyVaultLists) != 0 {
				t.Errorf("%q made requests: %+v", doc, c)
			}
		}
	})
}

// logUntilSentinel returns what the binary logged from byte offset before up to a sentinel mount's
// warning: stderr arrives through a pipe, so only what precedes a line seen is surely complete.
func logUntilSentinel(t *testing.T, b *binaryProc, before, i int) string {
	t.Helper()
	marker := fmt.Sprintf("sentinel%d", i)
	mustMount(t, b.client, spMount("objectName: plain\nobjectType: secret\n"+marker+": x"))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		log := b.stderr.String()[before:]
		if at := strings.Index(log, marker); at >= 0 {
			return log[:strings.LastIndex(log[:at], "\n")+1]
		}
	}
	t.Fatalf("the sentinel mount's warning was not logged within 10s")
	return ""
}

// withParam returns r with one SecretProviderClass parameter set.
func withParam(r mountRequest, key, value string) mountRequest {
	params := map[string]string{}
	for k, v := range r.params {
		params[k] = v
	}
	params[key] = value
	r.params = params
	return r
}

// summary lists a response's files as path, mode and a digest of the contents (files may hold
// key material, which a diff would print).
func summary(resp *v1alpha1.MountResponse) []string {
	var out []string
	for _, f := range resp.GetFiles() {
		out = append(out, fmt.Sprintf("%s %04o %x", f.GetPath(), f.GetMode(), sha256.Sum256(f.GetContents())))
	}
	return out
}

// TestAzureStackFromTheEnvironment: as with Azure's provider (go-autorest), the binary started
// with --cloud-name=AzureStackCloud takes the environment file from AZURE_ENVIRONMENT_FILEPATH,
// and a SecretProviderClass that names no cloud (or names AzureStackCloud without
// cloudEnvFileName) mounts through it: the same files as with cloudEnvFileName given.
func TestAzureStackFromTheEnvironment(t *testing.T) {
	cloudFile := filepath.Join(t.TempDir(), "cloud.json")
	if err := em.WriteCloudEnv(cloudFile); err != nil {
		t.Fatal(err)
	}
	b := startBinaryEnv(t, []string{config.AzureEnvironmentFileVar + "=" + cloudFile}, "--cloud-name=AzureStackCloud")
	const plain = "objectName: plain\nobjectType: secret"
	want := mustMount(t, b.client, withParam(withParam(spMount(plain), config.CloudName, config.AzureStackCloud), config.CloudEnvFileName, cloudFile))
	if len(want.GetFiles()) != 1 {
		t.Fatalf("with cloudEnvFileName: %d files, want 1", len(want.GetFiles()))
	}
	for name, r := range map[string]mountRequest{
		"no cloudName": spMount(plain),
		"cloudName AzureStackCloud, no file named": withParam(spMount(plain), config.CloudName, "azurestackcloud"),
	} {
		got := mustMount(t, b.client, r)
		if diff := cmp.Diff(summary(want), summary(got)); diff != "" {
			t.Errorf("%s: files (-with cloudEnvFileName +got):\n%s", name, diff)
		}
	}
}
