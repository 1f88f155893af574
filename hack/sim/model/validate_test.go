package model

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestModelMatchesTheBinary keeps the model honest: for one node, the requests it predicts (token,
// discovery, challenge and Key Vault reads; cold and warm; one identity per mount or one shared by
// all; with and without a result TTL) are within 10% of what the real provider binary makes
// against the emulator. The small cases run here (1 and 16 mounts); make sim prints all of them,
// 64 mounts included.
func TestModelMatchesTheBinary(t *testing.T) {
	bin := buildBinaries(t)
	var cases []Case
	for _, shared := range []bool{false, true} {
		for _, c := range []int{1, 16} {
			for _, k := range []int{1, 10} {
				for _, ttl := range []time.Duration{0, 10 * time.Second} {
					cases = append(cases, Case{Shared: shared, C: c, K: k, TTL: ttl})
				}
			}
		}
	}
	// Rotation mounts never take a kept result. (Concurrent rotation mounts of one identity share
	// a read only if it started after they arrived, which depends on the order their goroutines
	// run in; the driver's rotation reconciler mounts one pod at a time, so the model does not
	// need it.)
	cases = append(cases, Case{C: 1, K: 10, TTL: 10 * time.Second, Rotation: true},
		Case{C: 16, K: 10, TTL: 10 * time.Second, Rotation: true})
	// Workload identity: each pod's own token is exchanged once, then its reads are shared.
	for _, shared := range []bool{false, true} {
		cases = append(cases, Case{Workload: true, Shared: shared, C: 16, K: 10},
			Case{Workload: true, Shared: shared, C: 16, K: 10, TTL: 10 * time.Second})
	}
	got, err := Compare(bin, t.TempDir(), cases, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if !c.Within(0.10) {
			t.Errorf("%v %s: model %s, binary %s (token/discovery/challenge/reads): more than 10%% apart",
				c.Case, c.Phase, FormatCounts(c.Model), FormatCounts(c.Binary))
		} else if testing.Verbose() {
			t.Logf("%v %s: model %s, binary %s", c.Case, c.Phase, FormatCounts(c.Model), FormatCounts(c.Binary))
		}
	}
}

// buildBinaries builds the provider and the emulator of this tree, as make build does.
func buildBinaries(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := t.TempDir()
	for _, cmd := range []string{"provider", "kv-emulator"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, cmd), "./cmd/"+cmd)
		build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/%s: %v\n%s", cmd, err, out)
		}
	}
	return bin
}
