package provider

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmespath/go-jmespath"
)

func TestJSONMember(t *testing.T) {
	t.Parallel()
	doc := `{"db-password": "pw-1", "a": {"b": [10, {"c": "deep"}], "n": null}, "num": 12345678901234567890, "t": true, "a.b": "dotted", "obj": {"z": 1, "y": [1, 2]},` +
		` "hosts": [{"name": "h1", "ports": [1, 2]}, {"name": "h2", "ports": [3]}, {"port": 4}], "nested": [[1, [2]], [3]], "one": {"only": "o"}, "my key": {"x y": "spaced"}}`
	tests := []struct {
		key, want string
	}{
		{"db-password", "pw-1"},                     // exact key, not a JMESPath identifier
		{"a.b", "dotted"},                           // an exact key wins over the path
		{"num", "12345678901234567890"},             // exact key: stored digits
		{"t", "true"},                               // non-string: JSON
		{"obj", `{"z":1,"y":[1,2]}`},                // exact key: stored order, compact
		{"my key", `{"x y":"spaced"}`},              // exact key with a space
		{"a.b[1].c", "deep"},                        // a path
		{`"db-password"`, "pw-1"},                   // a quoted name
		{`"my key"."x y"`, "spaced"},                // quoted names after a dot
		{`"db\u002dpassword"`, "pw-1"},              // JSON escapes in a quoted name
		{"a.b[0]", "10"},                            // a number
		{"a.b[-1].c", "deep"},                       // a negative index
		{"a.n", ""},                                 // null result: see the error case below
		{"hosts[*].name", `["h1","h2"]`},            // a projection drops what is absent
		{"hosts[].ports[]", `[1,2,3]`},              // flattens
		{"hosts[*].ports[0]", `[1,3]`},              //
		{"nested[]", `[1,[2],3]`},                   // one level only
		{"nested[][]", `[1,2,3]`},                   //
		{"nested[*][*]", `[[1,[2]],[3]]`},           // projections nest
		{"[0]", ""},                                 // an index of an object: no such key
		{"a.b[5]", ""},                              // out of range: no such key
		{"obj.y[1]", "2"},                           //
		{"hosts[0]", `{"name":"h1","ports":[1,2]}`}, // a path's object: re-encoded, keys sorted
	}
	for _, tt := range tests {
		got, err := jsonMember(doc, tt.key)
		if tt.want == "" {
			if err == nil || !strings.Contains(err.Error(), "has no such key") {
				t.Errorf("jsonMember(%q): want a no-such-key error, got %q, %v", tt.key, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("jsonMember(%q) = %q, %v; want %q", tt.key, got, err, tt.want)
		}
	}
}

// TestJSONMemberRefusesNonPaths checks that every JMESPath construct outside the path subset is
// refused by name and offset, before the library sees it, and that the error never holds the
// value: the library's own messages print the secret (abs(@) on a string).
func TestJSONMemberRefusesNonPaths(t *testing.T) {
	t.Parallel()
	const value = `{"x": "value-secret-7f3a", "list": ["value-secret-7f3a"]}`
	for _, tt := range []struct {
		key, construct string
		offset         int
	}{
		{"abs(@)", "a function call", 3},
		{"starts_with(@,'x')", "a function call", 11},
		{"keys(obj) | sort(@)", "a function call", 4},
		{"x | y", "a space", 1},
		{"x|y", "a pipe (|)", 1},
		{"x||y", "an or-expression (||)", 1},
		{"x&&y", "an and-expression (&&)", 1},
		{"&x", "an expression reference (&)", 0},
		{"@", "the current node (@)", 0},
		{"list[?@ == 'a']", "a filter ([?...])", 4},
		{"[@,@,@,@,@,@,@,@,@,@]|[@,@,@,@,@,@,@,@,@,@]", "a multi-select list ([a, b])", 0},
		{"x.[a, b]", "a multi-select list (.[...])", 1},
		{"x.[0]", "a multi-select list (.[...])", 1},
		{"x.{a: a}", "a multi-select hash (.{...})", 1},
		{"{a: x}", "a multi-select hash ({...})", 0},
		{"`1`", "a literal (`...`)", 0},
		{"'x'", "a raw string literal ('...')", 0},
		{"x == x", "a space", 1},
		{"x==x", "a comparison (==)", 1},
		{"x<x", "a comparison (<)", 1},
		{"!x", "a negation (!)", 0},
		{"list[0:1]", "a slice ([a:b])", 4},
		{"list[:1]", "a slice ([a:b])", 4},
		{"list[::-1]", "a slice ([a:b])", 4},
		{"list[1234567890]", "an index of more than 9 digits", 4},
		{"list[0", "an unclosed bracket", 4},
		{"list[", "an unclosed bracket", 4},
		{"list[0,1]", "a comma inside an index", 6},
		{"list[-]", "a '-' that does not start an index", 5},
		{"(x)", "a parenthesis", 0},
		{"x)", "an unmatched )", 1},
		{"x]", "an unmatched ]", 1},
		{"x:", "a colon", 1},
		{"x,y", "a comma", 1},
		{".x", "a leading dot", 0},
		{"x..y", "an empty name between dots", 2},
		{"x.", "a trailing dot", 1},
		{"x.y.", "a trailing dot", 3},
		{`x"y"`, "a name that does not follow a dot", 1},
		{"[0]x", "a name that does not follow a dot", 3},
		{"x*", "an object wildcard (*: its members come in a new order on every read)", 1},
		{"one.*", "an object wildcard (*: its members come in a new order on every read)", 4},
		{"*.only", "an object wildcard (*: its members come in a new order on every read)", 0},
		{`"x`, "an unterminated quoted name", 0},
		{`"x\`, "an unterminated quoted name", 0},
		{`"x\q"`, "an escape that JSON does not have", 2},
		{`"x\u12"`, `an escape \u without 4 hexadecimal digits`, 2},
		{"\"x\x00\"", "a control character in a quoted name", 2},
		{"0x", `a name that starts with a digit (quote it: "0abc")`, 0},
		{"my-key", `a '-' outside quotes (quote such a name: "my-key")`, 2},
		{"café", `the character 'é' outside quotes`, 3},
		{"x\xff", "a byte that is not UTF-8", 1},
		{"x[][][][]", "a flatten ([]) beyond the 3 allowed", 7},
		{"", "an empty path", 0},
	} {
		_, err := jsonMember(value, tt.key)
		if err == nil {
			t.Errorf("jsonMember(%q): want an error", tt.key)
			continue
		}
		want := "objectJSONKey " + quoteKey(tt.key) + ": " + tt.construct + " at byte " + strconv.Itoa(tt.offset) + " is not accepted: " + jsonPathAccepted + `; its top-level keys are "list", "x"`
		if err.Error() != want {
			t.Errorf("jsonMember(%q):\n got %s\nwant %s", tt.key, err, want)
		}
		if strings.Contains(err.Error(), "value-secret") {
			t.Errorf("jsonMember(%q): the error holds the value: %v", tt.key, err)
		}
	}
}

// TestJSONPathsCompile checks that go-jmespath compiles every path checkJSONPath accepts, and
// refuses nothing a path may hold.
func TestJSONPathsCompile(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"a", "_a1", `"a"`, `"a b"."c\"d"`, `"\u00e9\n\\\/"`, "a.b", `a."b"`, "a[0]", "a[-1]", "a[01]",
		"a[*]", "a[]", "[0]", "[*]", "[]", "a[*].b[*].c", "a[][][]",
		"a[0][1].b", "[*][*][*][*][*][*]", "null", "true", "a[999999999]", "a[-999999999]",
	} {
		if r := checkJSONPath(key); r != nil {
			t.Errorf("checkJSONPath(%q) refuses %s at byte %d", key, r.construct, r.offset)
			continue
		}
		if _, err := jmespath.Compile(key); err != nil {
			t.Errorf("go-jmespath does not compile the accepted path %q: %v", key, err)
		}
	}
}

func TestJSONMemberErrorsNameKeysNotValues(t *testing.T) {
	t.Parallel()
	many := `{`
	for i := range 30 {
		if i > 0 {
			many += ","
		}
		many += `"k` + string(rune('a'+i%26)) + strings.Repeat("x", i) + `": "value-secret"`
	}
	many += `}`
	tests := []struct {
		name, value, key string
		want             []string
	}{
		{"absent", `{"user": "value-secret", "pass": "value-secret"}`, "password",
			[]string{`objectJSONKey "password": the secret's JSON has no such key (its top-level keys are "pass", "user")`}},
		{"not JSON", `value-secret`, "a", []string{"the secret's value is not JSON (syntax error at byte 1)"}},
		{"not JSON later", `{"a": value-secret}`, "a", []string{"the secret's value is not JSON (syntax error at byte 7)"}},
		{"number out of range", `{"a": "value-secret", "b": 1e999}`, "a", []string{"(a number out of range before byte 33)"}},
		{"too deep", strings.Repeat("[", 10001) + `"value-secret"` + strings.Repeat("]", 10001), "a", []string{"(nested too deeply at byte 10001)"}},
		{"an array", `["value-secret"]`, "a", []string{"the JSON is an array, not an object"}},
		{"a scalar", `"value-secret"`, "a", []string{"the JSON is a scalar, not an object"}},
		{"empty object", `{}`, "a", []string{"the JSON object is empty"}},
		{"refused expression", `{"x": "value-secret"}`, "a..b", []string{`objectJSONKey "a..b": an empty name between dots at byte 2 is not accepted`, `"x"`}},
		{"a type error", `{"x": "value-secret"}`, "abs(x)", []string{"a function call at byte 3"}},
		{"many keys", many, "nope", []string{"and 10 more"}},
		{"too large", `"` + strings.Repeat("v", maxJSONValueBytes) + `"`, "a", []string{"more than the 1048576 that are read as JSON"}},
		{"long key", `{"x": "value-secret"}`, strings.Repeat("k", 100) + "(", []string{`objectJSONKey "` + strings.Repeat("k", 64) + `"...: a function call at byte 100`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := jsonMember(tt.value, tt.key)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "value-secret") {
				t.Errorf("error leaks the value: %v", err)
			}
		})
	}
}

// TestJSONMemberBombsAnswerAtOnce: the 6-stage multi-select bomb (650 MiB and past the deadline
// when go-jmespath evaluated it) is refused before evaluation, and the costliest accepted path,
// three flattens over a 25 KiB array, stays linear. Not parallel: it reads the process's
// allocation counter.
func TestJSONMemberBombsAnswerAtOnce(t *testing.T) {
	stage := "[@,@,@,@,@,@,@,@,@,@]"
	bomb := strings.Repeat(stage+"|", 5) + stage
	if len(bomb) != 131 {
		t.Fatalf("the bomb is %d characters, want 131", len(bomb))
	}
	array := "[" + strings.Repeat("1,", 12800) + "1]"
	for _, tt := range []struct {
		name, value, key string
		refused          bool
		maxAlloc         uint64
		maxTime          time.Duration
	}{
		{"6-stage bomb", `{"k": "value-secret"}`, bomb, true, 64 << 10, 50 * time.Millisecond},
		{"6-stage bomb on 25 KiB", array, bomb, true, 4 << 20, 500 * time.Millisecond},
		{"3 flattens on 25 KiB", array, "[][][]", false, 16 << 20, time.Second},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		out, err := jsonMember(tt.value, tt.key)
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		allocated := after.TotalAlloc - before.TotalAlloc
		if tt.refused != (err != nil) {
			t.Errorf("%s: error %v, want refused %v", tt.name, err, tt.refused)
		}
		if len(out) > len(tt.value) {
			t.Errorf("%s: %d bytes out of %d in", tt.name, len(out), len(tt.value))
		}
		// The ceilings are far above what each costs (about 1 KiB and 10 us for the bomb alone,
		// 6 MiB and 10 ms for the flattens), for a loaded machine or -race.
		if allocated > tt.maxAlloc || elapsed > tt.maxTime {
			t.Errorf("%s: %d bytes allocated in %s, want under %d and %s", tt.name, allocated, elapsed, tt.maxAlloc, tt.maxTime)
		}
	}
}
