//go:build node

package e2enode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/akv-csi/provider/pkg/emulator"
)

// The rehearsed switch: an existing install of Azure's provider v1.8.2 (its chart, its binary,
// release csi owning the driver, pods that mount), switched to this provider by the README's
// steps ("Switching from the Azure provider"), and rolled back by them.
const (
	azureRelease = "csi"
	azureImage   = "mcr.microsoft.com/oss/v2/azure/secrets-store/provider-azure:v1.8.2"
	ourImage     = "ghcr.io/akv-csi/provider:"
	// postRenderEnv, when set, makes this test binary a helm post-renderer (see TestMain) that
	// adds the environment it names (NAME=VALUE, separated by newlines) to Azure's provider
	// container: Azure's chart has no env value, and its pods must reach the emulator through
	// its proxy, as ours do through linux.env.
	postRenderEnv = "E2E_POST_RENDER_ENV"
)

func TestMain(m *testing.M) {
	if env := os.Getenv(postRenderEnv); env != "" {
		if err := postRender(os.Stdin, os.Stdout, env); err != nil {
			fmt.Fprintln(os.Stderr, "post-render:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// postRender adds env (NAME=VALUE lines) to every container named provider-azure-installer of
// the manifests on in, and writes them to out.
func postRender(in io.Reader, out io.Writer, env string) error {
	var vars []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(env), "\n") {
		k, v, _ := strings.Cut(l, "=")
		vars = append(vars, map[string]string{"name": k, "value": v})
	}
	dec, enc := yaml.NewDecoder(in), yaml.NewEncoder(out)
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return enc.Close()
		}
		if err != nil {
			return err
		}
		if doc == nil {
			continue
		}
		if doc["kind"] == "DaemonSet" {
			spec, _ := doc["spec"].(map[string]any)
			tmpl, _ := spec["template"].(map[string]any)
			podSpec, _ := tmpl["spec"].(map[string]any)
			containers, _ := podSpec["containers"].([]any)
			for _, c := range containers {
				if c, ok := c.(map[string]any); ok && c["name"] == "provider-azure-installer" {
					list, _ := c["env"].([]any)
					for _, v := range vars {
						list = append(list, v)
					}
					c["env"] = list
				}
			}
		}
		if err := enc.Encode(doc); err != nil {
			return err
		}
	}
}

func TestSwitch(t *testing.T) {
	e, err := loadEnv()
	if err != nil {
		t.Fatal(err)
	}
	azureChart := os.Getenv("E2E_UPSTREAM_CHART")
	if azureChart == "" {
		t.Fatal("E2E_UPSTREAM_CHART is not set: run with make e2e-node, which prepares Azure's chart")
	}
	lf, err := os.Create(filepath.Join(e.dir, "logs", "kv-emulator-switch.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	l := log.New(lf, "", log.LstdFlags|log.Lmicroseconds)
	kv, err := emulator.Start(emulator.Options{
		Seed: seed(e, "system:serviceaccount:sw:app"), Addr: e.nodeIP + ":0", ProxyAddr: e.nodeIP + ":0",
		Logf: func(format string, args ...any) { l.Printf(format, args...) },
	})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	defer kv.Close()
	e.emulatorCA(t, kv)
	proxy := kv.ProxyURL()

	// The existing install: Azure's chart (which installs the driver) with Azure's image.
	start := time.Now()
	e.helmEnv(t, []string{postRenderEnv + "=HTTPS_PROXY=" + proxy + "\nHTTP_PROXY=" + proxy + "\nSSL_CERT_FILE=/etc/kv-emulator/ca.crt"},
		"install", azureRelease, azureChart, "-n", releaseNS, "-f", filepath.Join("testdata", "azure-values.yaml"),
		"--post-renderer", os.Args[0], "--wait", "--timeout", "5m")
	waitDaemonSets(t, e)
	daemonSet := e.providerState(t, azureImage)
	t.Logf("Azure's chart installed and ready in %s", time.Since(start).Round(time.Second))

	objs := []object{
		{name: "db-password", typ: "secret", mode: "600"},
		{name: "signing-rsa", typ: "key"},
		{name: "web", typ: "cert", alias: "web.crt"},
	}
	modes := map[string]string{"db-password": "600"}
	e.apply(t, namespace("sw", "app", wiClientID))
	e.apply(t, spc("sw", "kv", objs, map[string]string{"clientID": wiClientID}, ""))
	e.apply(t, deployment("sw", 2))
	e.waitReady(t, "sw", "rollout", "status", "deployment/app", "--timeout=3m")
	running := e.podNames(t, "sw", "app=sw")
	want := expected(t, kv, objs)
	for _, p := range running {
		checkPod(t, e, "sw", p, want, modes)
	}

	// The README's steps, as written there.
	values := filepath.Join(t.TempDir(), "azure-values.yaml")
	if err := os.WriteFile(values, []byte(e.helmRun(t, "get", "values", azureRelease, "-n", releaseNS, "-o", "yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	e.switchProvider(t, "switch", ourImage, daemonSet, func() {
		e.helmRun(t, "upgrade", azureRelease, chart, "-n", releaseNS, "-f", values,
			"--set", "secrets-store-csi-driver.install=true",
			// How this node reaches the emulator, as install() gives it: an operator's own values.
			"--set", "caBundle.configMapName=kv-emulator-ca",
			"--set", "linux.env[0].name=HTTPS_PROXY", "--set", "linux.env[0].value="+proxy,
			"--set", "linux.env[1].name=HTTP_PROXY", "--set", "linux.env[1].value="+proxy,
			"--wait", "--timeout", "5m")
	})
	e.afterSwitch(t, kv, "our provider", running, objs, modes, "node-db-password-v2")

	e.switchProvider(t, "rollback", azureImage, daemonSet, func() {
		e.helmRun(t, "rollback", azureRelease, "1", "-n", releaseNS, "--wait", "--timeout", "5m")
	})
	e.afterSwitch(t, kv, "Azure's provider again", running, objs, modes, "node-db-password-v3")

	e.must(t, "delete", "namespace", "sw", "--timeout=3m")
	e.helmRun(t, "uninstall", azureRelease, "-n", releaseNS, "--wait", "--timeout", "3m")
}

// switchProvider runs change (a helm upgrade or rollback) and checks that at most one provider
// container ran at a time, and that image now runs under the same DaemonSet, updated in place:
// the DaemonSet controller then stops a node's old pod before it starts the new one, where a new
// DaemonSet beside the old would start its pod at once.
func (e env) switchProvider(t *testing.T, what, image, daemonSet string, change func()) {
	t.Helper()
	most := e.watchProviders(t, func() {
		change()
		waitDaemonSets(t, e)
	})
	if most > 1 {
		t.Errorf("%s: %d provider containers ran at once on the node; want one at a time on the socket", what, most)
	}
	if uid := e.providerState(t, image); uid != daemonSet {
		t.Errorf("%s: the provider runs under DaemonSet %s, not %s: it was replaced, not updated in place", what, uid, daemonSet)
	}
}

// afterSwitch checks a switch's outcome: the running pods kept their files, a new pod mounts, and
// rotation goes on (a new version reaches the running pods within two poll intervals).
func (e env) afterSwitch(t *testing.T, kv *emulator.Emulator, who string, running []string, objs []object, modes map[string]string, value string) {
	t.Helper()
	want := expected(t, kv, objs)
	for _, p := range running {
		checkPod(t, e, "sw", p, want, modes)
	}
	name := "new-" + strings.ReplaceAll(value, "node-db-password-", "")
	e.apply(t, pod("sw", name, podSpec("app", "kv", "")))
	e.waitReady(t, "sw", "wait", "--for=condition=Ready", "pod/"+name, "--timeout=2m")
	checkPod(t, e, "sw", name, want, modes)
	if _, err := kv.AddSecretVersion(vault, "db-password", value); err != nil {
		t.Fatal(err)
	}
	want = expected(t, kv, objs)
	took := eventually(t, 2*pollInterval+20*time.Second, "the new version in every running pod with "+who, func(ctx context.Context) error {
		for _, p := range append(running, name) {
			got, err := e.mountedFiles(ctx, "sw", p, "/mnt/secrets")
			if err != nil {
				return err
			}
			if err := checkFiles("sw", p, got, want, modes); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("with %s: running pods kept their files, a new pod mounted, a new version reached them in %s", who, took.Round(time.Millisecond))
}

// providerState checks that the node runs one provider pod, with image (a prefix), that has
// not restarted (a provider that finds another one serving the socket exits), and returns the
// UID of its DaemonSet.
func (e env) providerState(t *testing.T, image string) (daemonSetUID string) {
	t.Helper()
	out := strings.Fields(e.must(t, "get", "pods", "-n", releaseNS, "-l", providerPods, "-o",
		`jsonpath={range .items[*]}{.spec.containers[0].image},{.status.containerStatuses[0].restartCount},{.metadata.ownerReferences[0].uid}{" "}{end}`))
	if len(out) != 1 {
		t.Fatalf("provider pods: %q, want one", out)
	}
	f := strings.Split(out[0], ",")
	if len(f) != 3 || !strings.HasPrefix(f[0], image) || f[1] != "0" {
		t.Fatalf("provider pod (image,restarts,DaemonSet UID) = %q, want image %s and no restart", out[0], image)
	}
	return f[2]
}

// watchProviders runs change while sampling, every 200 ms, how many provider containers run on
// the node (a terminating pod's included). It returns the most seen at once, and logs the longest
// time none ran (the node could not mount).
func (e env) watchProviders(t *testing.T, change func()) (most int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg       sync.WaitGroup
		seen     []string
		noneFrom time.Time
		gap      time.Duration
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			c, stop := context.WithTimeout(ctx, 5*time.Second)
			out, err := e.kubectl(c, "get", "pods", "-n", releaseNS, "-l", providerPods, "-o",
				`jsonpath={range .items[*]}{.metadata.name}:{.status.containerStatuses[0].state.running.startedAt}{" "}{end}`)
			stop()
			if err == nil {
				n := 0
				for _, f := range strings.Fields(out) {
					if !strings.HasSuffix(f, ":") {
						n++
					}
				}
				most = max(most, n)
				switch {
				case n == 0 && noneFrom.IsZero():
					noneFrom = time.Now()
				case n > 0 && !noneFrom.IsZero():
					gap = max(gap, time.Since(noneFrom))
					noneFrom = time.Time{}
				}
				if len(seen) == 0 || seen[len(seen)-1] != out {
					seen = append(seen, out)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	change()
	// Until a provider runs again, so the gap is measured to its end.
	eventually(t, 2*time.Minute, "a provider container running", func(ctx context.Context) error {
		out, err := e.kubectl(ctx, "get", "pods", "-n", releaseNS, "-l", providerPods, "-o", "jsonpath={.items[*].status.containerStatuses[0].state.running.startedAt}")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return errors.New("none yet")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	t.Logf("provider containers during the change (name:startedAt): %q; most at once %d, none for %s at most", seen, most, gap.Round(100*time.Millisecond))
	return most
}

// helmEnv is helmRun with extra environment variables.
func (e env) helmEnv(t *testing.T, extra []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := e.runEnv(ctx, "", extra, e.helm, args...)
	t.Logf("helm %s (%s)", args[0], time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
