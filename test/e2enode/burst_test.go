//go:build node

package e2enode

import (
	"encoding/json"
	"fmt"
	"log"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/akv-csi/provider/pkg/emulator"
)

// kvRequest is one request the emulator answered on its TLS port (Key Vault or Entra ID), as its
// log line says, with the time the test saw the line (when the answer had been written).
type kvRequest struct {
	at                 time.Time
	method, host, path string
	status             int
}

// requestLog is the emulator's Logf: it writes every line to the emulator's log file and keeps
// the requests answered on the TLS port, each with its time. The emulator's own request record
// (kv.Requests) has no times; its counters have no paths.
type requestLog struct {
	out  *log.Logger
	mu   sync.Mutex
	reqs []kvRequest
}

// The line serveTLS logs for every request (pkg/emulator/proxy.go).
var tlsRequestLine = regexp.MustCompile(`^kv-emulator: ([A-Z]+) https://([^/\s]+)(\S*) -> (-?\d+)$`)

func (l *requestLog) logf(format string, args ...any) {
	at := time.Now()
	msg := fmt.Sprintf(format, args...)
	l.out.Print(msg)
	m := tlsRequestLine.FindStringSubmatch(msg)
	if m == nil {
		return
	}
	status, _ := strconv.Atoi(m[4])
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, kvRequest{at: at, method: m[1], host: m[2], path: m[3], status: status})
}

// objectGets counts the single-object GETs of vault answered in (from, to], by "secrets/NAME",
// "keys/NAME" or "certificates/NAME" (any version; a certificate's policy counts as
// "certificates/NAME/policy"). List pages and the 401 challenges are left out.
func (l *requestLog) objectGets(vault string, from, to time.Time) map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	gets := map[string]int64{}
	for _, r := range l.reqs {
		if !r.at.After(from) || r.at.After(to) || r.method != "GET" || r.status == 401 {
			continue
		}
		host := strings.ToLower(r.host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !strings.HasPrefix(host, strings.ToLower(vault)+".") {
			continue
		}
		seg := strings.Split(strings.Trim(r.path, "/"), "/")
		if len(seg) < 2 || len(seg) > 3 || (seg[0] != "secrets" && seg[0] != "keys" && seg[0] != "certificates") {
			continue
		}
		key := seg[0] + "/" + strings.ToLower(seg[1])
		if len(seg) == 3 {
			switch seg[2] {
			case "versions":
				continue
			case "policy":
				key += "/policy"
			}
		}
		gets[key]++
	}
	return gets
}

// objectPath is how objectGets names the reads of an object of a SecretProviderClass.
func objectPath(o object) string {
	switch o.typ {
	case "key":
		return "keys/" + strings.ToLower(o.name)
	case "cert":
		return "certificates/" + strings.ToLower(o.name)
	}
	return "secrets/" + strings.ToLower(o.name)
}

// providerMount is one Mount the provider answered, from its per-mount log line ("mount
// succeeded" at -v=2, or "mount failed"): the pod, the vault, and when it started and ended.
type providerMount struct {
	ns, pod, vault string
	ok             bool
	start, end     time.Time
}

func (m providerMount) String() string {
	res := "ok"
	if !m.ok {
		res = "failed"
	}
	return fmt.Sprintf("%s/%s %s %s..%s", m.ns, m.pod, res, m.start.Format("15:04:05.000"), m.end.Format("15:04:05.000"))
}

// providerMounts reads the per-mount lines the provider pod logged since the given time, oldest
// first. It reads the JSON lines the chart configures (--log-format-json) and klog's text lines.
func (e env) providerMounts(t *testing.T, since time.Time) []providerMount {
	t.Helper()
	pods := e.podNames(t, releaseNS, providerPods)
	if len(pods) != 1 {
		t.Fatalf("provider pods %v: want one", pods)
	}
	out := e.must(t, "logs", "-n", releaseNS, pods[0], "-c", "provider-azure-installer", "--timestamps",
		"--since-time="+since.UTC().Format(time.RFC3339))
	var mounts []providerMount
	for _, l := range strings.Split(out, "\n") {
		ts, line, _ := strings.Cut(l, " ")
		if !mountLine.MatchString(line) {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("provider log line without a timestamp: %q", l)
		}
		m, err := parseMountLine(line, at)
		if err != nil {
			t.Fatalf("provider log line %q: %v", l, err)
		}
		mounts = append(mounts, m)
	}
	sort.Slice(mounts, func(i, j int) bool { return mounts[i].start.Before(mounts[j].start) })
	return mounts
}

var (
	mountLine    = regexp.MustCompile(`^\{.*"msg":"mount (succeeded|failed)"|^[IE]\d{4} [^\]]*\] "mount (succeeded|failed)"`)
	textPod      = regexp.MustCompile(`\bpod="([^"/]*)/([^"]*)"`)
	textVault    = regexp.MustCompile(`\bvault="([^"]*)"`)
	textDuration = regexp.MustCompile(`\bduration="?([0-9.]+[a-zµ]+)"?`)
)

// parseMountLine reads one per-mount line; at is the container runtime's time of the line, used
// when the line has no time of its own.
func parseMountLine(line string, at time.Time) (providerMount, error) {
	m := providerMount{end: at}
	var d time.Duration
	if strings.HasPrefix(line, "{") {
		var j struct {
			Time     string          `json:"time"`
			Msg      string          `json:"msg"`
			Pod      json.RawMessage `json:"pod"`
			Vault    string          `json:"vault"`
			Duration json.RawMessage `json:"duration"`
		}
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			return m, err
		}
		switch j.Msg {
		case "mount succeeded":
			m.ok = true
		case "mount failed":
		default:
			return m, fmt.Errorf("unexpected msg %q", j.Msg)
		}
		if tm, err := time.Parse(time.RFC3339Nano, j.Time); err == nil {
			m.end = tm
		}
		var ref struct{ Name, Namespace string }
		var s string
		switch {
		case json.Unmarshal(j.Pod, &ref) == nil:
			m.ns, m.pod = ref.Namespace, ref.Name
		case json.Unmarshal(j.Pod, &s) == nil:
			m.ns, m.pod, _ = strings.Cut(s, "/")
		default:
			return m, fmt.Errorf("pod %s", j.Pod)
		}
		m.vault = j.Vault
		var ns int64
		switch {
		case json.Unmarshal(j.Duration, &ns) == nil:
			d = time.Duration(ns)
		case json.Unmarshal(j.Duration, &s) == nil:
			var err error
			if d, err = time.ParseDuration(s); err != nil {
				return m, err
			}
		default:
			return m, fmt.Errorf("duration %s", j.Duration)
		}
	} else {
		m.ok = strings.Contains(line, `"mount succeeded"`)
		p, v, dur := textPod.FindStringSubmatch(line), textVault.FindStringSubmatch(line), textDuration.FindStringSubmatch(line)
		if p == nil || v == nil || dur == nil {
			return m, fmt.Errorf("no pod, vault or duration")
		}
		m.ns, m.pod, m.vault = p[1], p[2], v[1]
		var err error
		if d, err = time.ParseDuration(dur[1]); err != nil {
			return m, err
		}
	}
	if m.pod == "" {
		return m, fmt.Errorf("no pod")
	}
	m.start = m.end.Add(-d)
	return m, nil
}

// testBurst scales wi/app from 0 to 3 replicas of the SecretProviderClass with objs and checks
// what the burst cost Key Vault and Entra ID.
//
// The replicas share one identity (same service account): every object is read once for the 3 of
// them, a kept result or a joined read serving the others, and each replica proves its own token
// (one Entra exchange per pod token: README "Trust boundaries"). The driver's rotation reconciler
// re-mounts every mounted pod every 5 s, so rotations of the replicas mounted first land in the
// burst, and a rotation mount reads again: it may join a read in flight but never takes a kept
// result. So the bound is per object: at most 1 + R GETs, R the replicas' mounts after each one's
// first (rotations, and failed attempts if any). R is counted from the provider's own per-mount
// log lines (pod, vault, duration), the GETs from the emulator's log (path, time), over the same
// window; the driver's rotation counter is only reported: it counts every pod of the node. A
// provider that shares nothing reads each object 3 + R times, whatever R is.
//
// The window ends once every replica has been rotated at least once (so rotations always land in
// the burst), at an instant at which no mount is in progress, so every GET in it belongs to a
// mount counted in it. Mounts of other pods from the same vault would read the same objects under
// other identities: the burst runs before any other namespace mounts, and fails if it sees one.
func testBurst(t *testing.T, e env, kv *emulator.Emulator, reqs *requestLog, objs []object) {
	rot0 := driverRotations(t, e)
	t0 := time.Now()
	kv.ResetCounters()
	e.must(t, "-n", "wi", "scale", "deployment/app", "--replicas=3")
	e.waitReady(t, "wi", "rollout", "status", "deployment/app", "--timeout=3m")
	took := time.Since(t0)
	pods := e.podNames(t, "wi", "app=wi")
	if len(pods) != 3 {
		t.Fatalf("want 3 pods, got %v", pods)
	}

	// The window's end: an instant at which no mount of any pod was in progress, after every
	// replica has been rotated at least once, so that rotations always land in the burst. Rotation
	// mounts run one at a time every 5 s and take milliseconds, so most instants qualify; the
	// provider logs a mount when it ends, so its log is read 2 s after the instant.
	const guard = 100 * time.Millisecond // the log line's time is when the mount ended, or a bit later
	var (
		t1        time.Time
		c         emulator.Counters
		mounts    []providerMount
		driverWin int64
	)
	for try := 1; ; try++ {
		t1 = time.Now()
		c = kv.Counters()
		driverWin = driverRotations(t, e) - rot0
		time.Sleep(2 * time.Second)
		mounts = e.providerMounts(t, t0.Add(-2*time.Second))
		var busy []providerMount
		n := map[string]int{}
		for _, m := range mounts {
			if !t1.Before(m.start.Add(-guard)) && !t1.After(m.end.Add(guard)) {
				busy = append(busy, m)
			}
			if m.ns == "wi" && m.end.Before(t1) {
				n[m.pod]++
			}
		}
		rotated := 0
		for _, p := range pods {
			if n[p] >= 2 {
				rotated++
			}
		}
		if len(busy) == 0 && rotated == len(pods) {
			break
		}
		if try == 15 {
			t.Fatalf("burst: no end found, after %d tries, at which every replica had been rotated and no mount was in progress; the last at %s: mounts in progress %v, mounts since the start %v",
				try, t1.Format("15:04:05.000"), busy, mounts)
		}
	}
	driverRot := driverRotations(t, e) - rot0

	first := map[string]providerMount{} // each replica's first successful mount
	var more, foreign []providerMount
	failed := 0
	for _, m := range mounts {
		if !m.end.After(t0) || !m.start.Before(t1) {
			continue
		}
		if m.ns != "wi" {
			if strings.EqualFold(m.vault, vault) {
				foreign = append(foreign, m)
			}
			continue
		}
		if !m.ok {
			failed++
		}
		if _, seen := first[m.pod]; seen || !m.ok {
			more = append(more, m)
			continue
		}
		first[m.pod] = m
	}
	rot := int64(len(more))
	gets := reqs.objectGets(vault, t0, t1)
	var sum int64
	for _, n := range gets {
		sum += n
	}
	tokens := c.TokenRequestsByClient[wiClientID]
	t.Logf("burst: 3 replicas Running in %s; window %s..%s; Key Vault GETs by object %v (%d; the emulator's counter: %d); %d token requests; "+
		"the provider's mounts of the replicas: %d first, %d more (rotations, %d of them failed); the driver's rotation counter (every pod of the node) rose by %d in the window (read just after its end), %d until its end was chosen",
		took.Round(time.Second), t0.Format("15:04:05.000"), t1.Format("15:04:05.000"), gets, sum, c.KeyVaultGetsTotal(), tokens, len(first), rot, failed, driverWin, driverRot)

	if len(foreign) > 0 {
		t.Fatalf("burst: pods of other namespaces mounted from vault %s during the burst %v: their reads cannot be told from the replicas'; the burst must run before any other pod mounts from this vault", vault, foreign)
	}
	for _, p := range pods {
		if _, ok := first[p]; !ok {
			t.Fatalf("burst: the provider's log shows no successful mount of wi/%s in the burst (mounts seen: %v): the GETs cannot be attributed (the chart's logVerbosity must be 2 or more)", p, mounts)
		}
	}
	if len(first) != len(pods) {
		t.Fatalf("burst: first mounts of %d pods of wi (%v), want the 3 replicas %v", len(first), first, pods)
	}
	if sum < c.KeyVaultGetsTotal() {
		t.Fatalf("burst: the emulator's log has %d single GETs of vault %s, its counter %d: the log missed requests", sum, vault, c.KeyVaultGetsTotal())
	}
	var missing, over []string
	for _, o := range objs {
		if p := objectPath(o); gets[p] < 1 {
			missing = append(missing, p)
		}
	}
	for p, n := range gets {
		if n > 1+rot {
			over = append(over, fmt.Sprintf("%s %d times", p, n))
		}
	}
	sort.Strings(over)
	if len(missing) > 0 {
		t.Fatalf("burst: no GET of %v recorded for 3 replicas of %d objects: want every object read at least once", missing, len(objs))
	}
	if len(over) > 0 {
		t.Fatalf("burst: Key Vault read %s for 3 replicas of %d objects with %d more mount(s) of the replicas (rotations) in the burst: "+
			"want every object read at most %d times (once for the 3 replicas, shared, plus once per rotation mount); "+
			"a provider that shares nothing reads every object 3 + %d = %d times",
			strings.Join(over, ", "), len(objs), rot, 1+rot, rot, 3+rot)
	}
	if tokens < 1 || tokens > 3+rot {
		t.Fatalf("burst: %d token requests of %s for 3 replicas with %d more mount(s) of the replicas in the burst: want 1 to %d (one per pod token and mount)",
			tokens, wiClientID, rot, 3+rot)
	}
}
