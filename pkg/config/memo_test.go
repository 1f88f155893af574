package config

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A Memo parses exactly as Parse does, the first time and every time after, whatever the callers
// do to what it returned.
func TestMemoParsesAsParse(t *testing.T) {
	t.Parallel()
	m := NewMemo(0)
	inputs := []string{
		attrs(nil),
		attrs(map[string]string{Objects: objectsYAML("objectName: a\nobjectType: secret", "objectName: b\nobjectType: key\nobjectAlias: k/b.pub")}),
		attrs(map[string]string{PodName: "app-1"}),                                            // same objects, another pod
		attrs(map[string]string{Objects: objectsYAML("objectName: a\nobjectType: nonsense")}), // invalid: never remembered
	}
	for round := range 3 {
		for i, in := range inputs {
			want, wantErr := Parse(in, "", "420", Defaults{})
			got, gotErr := m.Parse(in, "", "420", Defaults{})
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("round %d, input %d: error %v, want %v", round, i, gotErr, wantErr)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("round %d, input %d (-Parse +Memo.Parse):\n%s", round, i, diff)
			}
			for j := range got.Objects { // a caller changing its copy changes nothing remembered
				got.Objects[j].Name = "changed"
			}
		}
	}
	if n := len(m.byKey); n != 2 {
		t.Errorf("%d objects parameters remembered, want 2 (the two valid ones)", n)
	}
	// The driver's default mode is part of what is remembered.
	cfg, err := m.Parse(inputs[0], "", "256", Defaults{})
	if err != nil || cfg.Objects[0].Mode != 0o400 {
		t.Errorf("mode %v (err %v) with permission 0400 from the driver, want 0400", cfg.Objects[0].Mode, err)
	}
}

// A Memo holds at most its byte bound of parameter text, dropping the least recently used.
func TestMemoIsBounded(t *testing.T) {
	t.Parallel()
	one := objectsYAML("objectName: s0\nobjectType: secret")
	m := NewMemo(3 * len(one))
	for i := range 10 {
		objects := objectsYAML(fmt.Sprintf("objectName: s%d\nobjectType: secret", i))
		if _, err := m.Parse(attrs(map[string]string{Objects: objects}), "", "420", Defaults{}); err != nil {
			t.Fatal(err)
		}
		if m.bytes > m.max || len(m.byKey) != m.order.Len() {
			t.Fatalf("after %d parameters: %d bytes remembered (at most %d), %d keys for %d entries", i+1, m.bytes, m.max, len(m.byKey), m.order.Len())
		}
	}
	if len(m.byKey) != 3 {
		t.Errorf("%d remembered, want the last 3", len(m.byKey))
	}
}
