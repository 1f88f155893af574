package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
)

// vaultBig holds bigObjects secrets of bigValueBytes each (bulk-000 ...), readable by spOK.
const (
	vaultBig      = "kv-int-big"
	bigObjects    = 300
	bigValueBytes = 20 << 10
)

var bigVaultOnce sync.Once

func seedBigVault(t *testing.T) {
	t.Helper()
	var err error
	bigVaultOnce.Do(func() {
		if err = em.AddVault(emulator.Vault{Name: vaultBig}); err != nil {
			return
		}
		_, err = em.AddSecrets(vaultBig, emulator.BulkSecrets{Count: bigObjects, Value: strings.Repeat("b", bigValueBytes)})
		em.AddGrants(emulator.Grant{Identity: spOK, Vault: vaultBig})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bigEntries names n secrets of vaultBig.
func bigEntries(n int) []string {
	b := emulator.BulkSecrets{Count: bigObjects}
	entries := make([]string, n)
	for i := range entries {
		entries[i] = "objectName: " + b.BulkName(i) + "\nobjectType: secret"
	}
	return entries
}

// hostileCase is a mount request a SecretProviderClass author may send, and the answer it gets.
type hostileCase struct {
	name string
	req  mountRequest
	code codes.Code
	want string
}

// checkHostile sends each case and checks the code, the message, the 2 s bound and that no secret
// value (nor any of forbidden) is in the message.
func checkHostile(t *testing.T, c v1alpha1.CSIDriverProviderClient, cases []hostileCase, forbidden ...string) {
	t.Helper()
	for _, tt := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		_, err := c.Mount(ctx, tt.req.build(t))
		took := time.Since(start)
		cancel()
		st := status.Convert(err)
		if st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) {
			t.Errorf("%s: got %s %.400q, want %s with %q", tt.name, st.Code(), st.Message(), tt.code, tt.want)
		}
		if took > 2*time.Second {
			t.Errorf("%s: answered after %v, want within 2s", tt.name, took.Round(time.Millisecond))
		}
		if leaked := leakedSecrets(st.Message()); len(leaked) > 0 {
			t.Errorf("%s: the status holds secret material %q", tt.name, leaked)
		}
		for _, f := range forbidden {
			if strings.Contains(st.Message(), f) {
				t.Errorf("%s: the status holds %q", tt.name, f)
			}
		}
	}
}

// TestNewEdgesAgainstTheBinary sends the provider binary, at -v=10, what the object fields added
// last let a SecretProviderClass author choose: JMESPath that would print the secret or multiply
// it, selections and vaults by the hundred, a vault name in another case, and a mount that reads
// more than it may. Each answers within 2 s with a specific code; the process stays under 100 MiB
// and mounts normally afterwards, and no secret value reaches a status or its log.
func TestNewEdgesAgainstTheBinary(t *testing.T) {
	seedBigVault(t)
	b := startBinaryEnv(t, nil, "-v=10")
	with := func(objs ...string) mountRequest { return spRequest(spOK, objs...) }
	jsonKey := func(expr string) mountRequest {
		return with("objectName: app-config\nobjectType: secret\nobjectJSONKey: " + strconv.Quote(expr))
	}
	stage := "[" + strings.TrimSuffix(strings.Repeat("@,", 10), ",") + "]"
	bomb := strings.TrimSuffix(strings.Repeat(stage+"|", 6), "|")
	var selections, vaults []string
	for i := range config.MaxObjects {
		selections = append(selections, fmt.Sprintf("objectNamePrefix: big-\nobjectType: secret\nobjectAlias: d%d", i))
	}
	for i := range config.MaxVaults + 1 {
		vaults = append(vaults, fmt.Sprintf("objectName: plain\nobjectType: secret\nobjectAlias: v%d\nkeyvaultName: kv-other-%d", i, i))
	}
	big := spRequest(spOK, bigEntries(250)...) // 250 x 20 KiB: more than the 4 MiB a mount may read
	big.params[config.KeyVaultName] = vaultBig
	checkHostile(t, b.client, []hostileCase{
		{"a function that prints its argument", jsonKey("abs(@)"), codes.InvalidArgument, `objectJSONKey "abs(@)": a function call`},
		{"a type error on a member", jsonKey("starts_with(api, 'x')"), codes.InvalidArgument, "a function call"},
		{"a pipe into a function", jsonKey("api.token | length(@)"), codes.InvalidArgument, "objectJSONKey"},
		{"a filter", jsonKey("list[?@ > `1`]"), codes.InvalidArgument, "a filter"},
		{"a 10^6 multiplier", jsonKey(bomb), codes.InvalidArgument, "objectJSONKey"},
		{"the multiplier, measured", jsonKey("length(" + bomb + ")"), codes.InvalidArgument, "objectJSONKey"},
	})
	em.ResetCounters() // refused before any request:
	checkHostile(t, b.client, []hostileCase{
		{"256 selections", with(selections...), codes.InvalidArgument, "could write up to 25600 files"},
		{"9 more vaults", with(vaults...), codes.InvalidArgument, "name 10 vaults"},
	})
	if c := em.Counters(); c.TokenRequests+c.Challenges+sum(c.KeyVaultGets)+sum(c.KeyVaultLists) != 0 {
		t.Errorf("the refused mounts made requests: %+v", c)
	}
	checkHostile(t, b.client, []hostileCase{
		{"a mount that reads more than 4 MiB", big, codes.ResourceExhausted, "the mount read more than 4194304 bytes from Key Vault"},
	})

	// One vault, whatever the case of its name: proof, limiter and kept results are shared.
	upper := spRequest(spOK, plainSecret)
	upper.params[config.KeyVaultName] = "KV-INT"
	if got := files(mustMount(t, b.client, upper))["plain"].GetContents(); string(got) != plainValue {
		t.Fatalf("KV-INT: %q", got)
	}
	em.ResetCounters()
	mixed := spRequest(spOK, plainSecret)
	mixed.params[config.KeyVaultName] = "Kv-Int"
	mustMount(t, b.client, mixed)
	if c := em.Counters(); c.TokenRequests+c.Challenges+sum(c.KeyVaultGets) != 0 {
		t.Errorf("Kv-Int after KV-INT made requests (a second vault to the provider): %+v", c)
	}

	if rss := peakRSS(t, b.proc.Pid); rss > 100<<20 {
		t.Errorf("peak RSS %d MiB, want under 100 MiB", rss>>20)
	} else {
		t.Logf("peak RSS: %.1f MiB", float64(rss)/(1<<20))
	}
	if got := files(mustMount(t, b.client, spRequest(spOK, plainSecret)))["plain"].GetContents(); string(got) != plainValue {
		t.Errorf("a normal mount afterwards: %q", got)
	}
	if leaked := leakedSecrets(b.stderr.String()); len(leaked) > 0 {
		t.Errorf("the provider's -v=10 log holds secret material: %q", leaked)
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// madeUp is a mount with a made-up identity: a service principal's secret or a managed identity
// client ID nobody issued, naming 15 vaults besides the mount's.
func madeUp(i int) mountRequest {
	var objs []string
	for v := range config.MaxVaults - 1 {
		objs = append(objs, fmt.Sprintf("objectName: plain\nobjectType: secret\nobjectAlias: v%d\nkeyvaultName: kv-victim-%d", v, v))
	}
	r := spRequest(spOK, objs...)
	if i%2 == 0 {
		r.secrets["clientsecret"] = fmt.Sprintf("made-up-%d", i)
	} else {
		r.secrets = nil
		r.params[config.UseVMManagedIdentity] = "true"
		r.params[config.UserAssignedIdentityID] = fmt.Sprintf("5b0a0000-0000-4000-8000-%012d", 100000+i)
	}
	return r
}

// TestMadeUpIdentitiesLeaveNothing: 1,000 mounts with made-up service principals and managed
// identities, each naming 16 vaults, keep nothing: the proven identity's next mount makes no
// token and no challenge request, and the process stays under 100 MiB.
func TestMadeUpIdentitiesLeaveNothing(t *testing.T) {
	b := startBinaryEnv(t, nil)
	mustMount(t, b.client, spRequest(spOK, plainSecret))
	var wg sync.WaitGroup
	var mu sync.Mutex
	codesSeen := map[codes.Code]int{}
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 1000; i += 8 {
				_, err := mount(t, b.client, madeUp(i))
				mu.Lock()
				codesSeen[status.Code(err)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if codesSeen[codes.Unauthenticated] != 1000 {
		t.Errorf("made-up identities answered %v, want 1000 Unauthenticated", codesSeen)
	}
	em.ResetCounters()
	mustMount(t, b.client, spRequest(spOK, plainSecret))
	if c := em.Counters(); c.TokenRequests != 0 || c.Challenges != 0 {
		t.Errorf("the proven identity's next mount made %d token and %d challenge requests, want 0 and 0", c.TokenRequests, c.Challenges)
	}
	if rss := peakRSS(t, b.proc.Pid); rss > 100<<20 {
		t.Errorf("peak RSS %d MiB, want under 100 MiB", rss>>20)
	} else {
		t.Logf("peak RSS after 1,000 made-up identities: %.1f MiB", float64(rss)/(1<<20))
	}
}

// TestNewIdentityMountsDuringAFlood: while another namespace floods the vault with identities it
// refuses (and made-up ones), a legitimate identity's first mount succeeds within its deadline,
// right after the provider started (every identity is new).
func TestNewIdentityMountsDuringAFlood(t *testing.T) {
	b := startBinaryEnv(t, nil, "--vault-rate-limit=5", "--vault-burst=5")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				r := spRequest(spDenied, threeObjects...)
				if i%2 == 1 {
					r = madeUp(w*1000 + i)
				}
				r.params[config.PodNamespace] = "attacker"
				mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = b.client.Mount(mctx, r.build(t))
				cancel()
			}
		})
	}
	time.Sleep(2 * time.Second) // the refused identity is on probation, whose budget the flood spends
	mctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := b.client.Mount(mctx, spRequest(spOK, threeObjects...).build(t))
	cancel()
	stop()
	wg.Wait()
	if err != nil {
		t.Errorf("the legitimate identity's first mount during the flood: %v", err)
	}
}

// TestConcurrentHostileMountsStayUnderTheChartLimit: 64 mounts at once, each reading and writing
// close to the 4 MiB a mount may, stay under the chart's default memory limit (256 Mi, of which the
// chart passes 90% as GOMEMLIMIT), and the provider serves a normal mount afterwards.
func TestConcurrentHostileMountsStayUnderTheChartLimit(t *testing.T) {
	seedBigVault(t)
	b := startBinaryEnv(t, []string{"GOMEMLIMIT=241591910"}) // what the chart sets for its 256Mi limit
	heavy := spRequest(spOK, bigEntries(180)...)             // 180 x 20 KiB = 3.5 MiB read and written
	heavy.params[config.KeyVaultName] = vaultBig
	var wg sync.WaitGroup
	var mu sync.Mutex
	codesSeen := map[codes.Code]int{}
	start := time.Now()
	for i := range 64 {
		wg.Go(func() {
			req := heavy.build(t)
			if i%2 == 1 { // half of them rotation polls: fresh reads, no kept result
				req.CurrentObjectVersion = []*v1alpha1.ObjectVersion{{Id: "secret/bulk-000", Version: "old"}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := b.client.Mount(ctx, req)
			mu.Lock()
			codesSeen[status.Code(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	rss := peakRSS(t, b.proc.Pid)
	t.Logf("64 mounts of 3.5 MiB at once: %v in %v, peak RSS %.1f MiB", codesSeen, time.Since(start).Round(time.Millisecond), float64(rss)/(1<<20))
	if rss > 256<<20 {
		t.Errorf("peak RSS %d MiB, over the chart's 256 Mi limit", rss>>20)
	}
	if codesSeen[codes.OK] == 0 {
		t.Errorf("no heavy mount succeeded: %v", codesSeen)
	}
	mustMount(t, b.client, spRequest(spOK, plainSecret))
}
