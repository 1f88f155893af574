package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"k8s.io/klog/v2"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// jsonLines decodes one JSON object per line, failing on any line that is not one.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("log line is not JSON: %q (%v)", sc.Text(), err)
			continue
		}
		out = append(out, m)
	}
	return out
}

func findLine(lines []map[string]any, msg string) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

// TestJSONLogsHonourVerbosity: with the flags the chart renders (--log-format-json -v=2), the flag
// parsing and logger setup run() uses write V(2) lines (the server's per-mount line) as JSON with
// "v":2, and leave out V(3).
func TestJSONLogsHonourVerbosity(t *testing.T) {
	o, err := parseFlags([]string{"--log-format-json=true", "-v=2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resetKlog(t) })
	var buf lockedBuffer
	setupLogging(o, &buf)

	klog.InfoS("starting Azure Key Vault provider", "version", "test")
	klog.V(2).InfoS("mount succeeded", "pod", klog.KRef("default", "app-0"), "vault", "kv-prod")
	klog.V(3).InfoS("too detailed for -v=2")
	klog.ErrorS(errors.New("403 Forbidden"), "mount failed", "pod", klog.KRef("default", "app-1"))
	klog.Flush()

	lines := jsonLines(t, buf.String())
	mount := findLine(lines, "mount succeeded")
	if mount == nil {
		t.Fatalf("no V(2) \"mount succeeded\" line at -v=2 in %q", buf.String())
	}
	if mount["v"] != float64(2) || mount["level"] != "INFO" || mount["vault"] != "kv-prod" || mount["pod"] == nil {
		t.Errorf("mount line: %v", mount)
	}
	if l := findLine(lines, "starting Azure Key Vault provider"); l == nil || l["v"] != float64(0) {
		t.Errorf("V(0) line: %v", l)
	}
	if l := findLine(lines, "mount failed"); l == nil || l["level"] != "ERROR" || l["err"] != "403 Forbidden" {
		t.Errorf("error line: %v", l)
	}
	if findLine(lines, "too detailed for -v=2") != nil {
		t.Errorf("a V(3) line was written at -v=2: %q", buf.String())
	}
}

// TestJSONLogsDefaultVerbosity: without -v only V(0) lines and errors are written.
func TestJSONLogsDefaultVerbosity(t *testing.T) {
	o, err := parseFlags([]string{"--log-format-json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resetKlog(t) })
	var buf lockedBuffer
	setupLogging(o, &buf)
	klog.InfoS("listening")
	klog.V(1).InfoS("hidden")
	klog.Flush()
	lines := jsonLines(t, buf.String())
	if findLine(lines, "listening") == nil || findLine(lines, "hidden") != nil {
		t.Errorf("-v=0 wrote %q", buf.String())
	}
}
