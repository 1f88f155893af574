package provider

import (
	"encoding/json"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmespath/go-jmespath"
)

// Inputs FuzzJSONKey judges: a document up to Key Vault's 25 KiB and an expression up to the
// 512 bytes the parser accepts. Larger inputs are skipped, not judged.
const (
	fuzzJSONMaxDoc  = 25 << 10
	fuzzJSONMaxExpr = 512
)

// The resource ceiling of one jsonMember call on a document of n bytes: jsonAllocPerByte*n +
// jsonAllocFixed bytes allocated, and jsonTimeCeiling.
//
// encoding/json alone allocates up to about 75 bytes per byte of document when it reads it into
// maps and slices (nested objects {"":{"":...}}: a map per 4 bytes), and re-encoding a deeply
// nested result about 60; 16 per byte cannot hold. What the path adds is linear (see
// checkJSONPath): all descending steps together about 35 bytes per byte, each flatten ([])
// about 70 on a flat array of numbers, the worst case, and at most maxJSONFlattens of them.
// Measured on the seeds and the worst shapes: at most 290 bytes per byte ([*][][][] over
// [1,1,...]; 7.4 MB for 25 KiB). 512 per byte and 1 MiB leave room for that, and for what the
// runtime and the fuzzing engine allocate meanwhile: 14 MiB for a 25 KiB secret, all of it garbage
// once the call returns; the 6-stage multi-select bomb this replaces reached 650 MiB.
//
// Time: the worst case measured is about 15 ms (re-encoding 9,000 nested arrays, or a
// projection and three flattens over 12,800 numbers). 250 ms is over ten times that, for a
// shared machine; a call that is not linear in the document exceeds it at once on 25 KiB, as
// the bomb did (seconds). -race runs about ten times slower: the ceiling is ten times higher.
const (
	jsonAllocPerByte = 512
	jsonAllocFixed   = 1 << 20
	jsonTimeCeiling  = 250 * time.Millisecond
	// jsonOutputFactor bounds the result: paths select disjoint subtrees, and re-encoding grows a
	// character at most 6 times ("<" is written "\u003c").
	jsonOutputFactor = 6
)

// FuzzJSONKey feeds a document and an objectJSONKey to jsonMember and checks that it never
// panics, never lets go-jmespath fail on a path it accepted, stays under the ceilings above,
// returns at most jsonOutputFactor times the document, and never repeats a string value of the
// document in its error: errors reach pod events and logs, and the document is a secret.
func FuzzJSONKey(f *testing.F) {
	for _, s := range jsonKeySeeds() {
		f.Add(s[0], s[1])
	}
	vocabulary := jsonErrorVocabulary()
	timeCeiling := jsonTimeCeiling
	if raceEnabled() {
		timeCeiling *= 10
	}
	f.Fuzz(func(t *testing.T, doc, expr string) {
		if len(doc) > fuzzJSONMaxDoc || len(expr) > fuzzJSONMaxExpr {
			return
		}
		if checkJSONPath(expr) == nil {
			if _, err := jmespath.Compile(expr); err != nil {
				t.Fatalf("checkJSONPath accepts %q but go-jmespath does not compile it", expr)
			}
		}
		out, err := checkJSONKeyCost(t, doc, expr, timeCeiling)
		if err == nil {
			if len(out) > jsonOutputFactor*len(doc) {
				t.Errorf("jsonMember(%d bytes, %q) returned %d bytes, more than %d times the document", len(doc), expr, len(out), jsonOutputFactor)
			}
			return
		}
		msg := err.Error()
		if strings.Contains(msg, "JMESPath library") {
			t.Errorf("go-jmespath failed on the accepted path %q: %s", expr, msg)
		}
		if v, ok := echoedValue(msg, doc, expr, vocabulary); ok {
			t.Errorf("the error repeats the document's string value %q: %s", v, msg)
		}
	})
}

// checkJSONKeyCost runs jsonMember and fails t if it allocated or took more than the ceiling,
// measured with runtime.ReadMemStats around the call. The counter is the process's and the
// machine is shared, so a call over the ceiling is measured twice more and judged by its smallest
// cost: jsonMember is deterministic, and what another goroutine allocated or a stall cost is not.
func checkJSONKeyCost(t *testing.T, doc, expr string, timeCeiling time.Duration) (string, error) {
	t.Helper()
	allocCeiling := uint64(len(doc))*jsonAllocPerByte + jsonAllocFixed //nolint:gosec // a length, never negative
	allocated, elapsed := ^uint64(0), time.Duration(1<<63-1)
	var out string
	var err error
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		out, err = jsonMember(doc, expr)
		elapsed = min(elapsed, time.Since(start))
		runtime.ReadMemStats(&after)
		allocated = min(allocated, after.TotalAlloc-before.TotalAlloc)
		if allocated <= allocCeiling && elapsed <= timeCeiling {
			return out, err
		}
	}
	if allocated > allocCeiling {
		t.Errorf("jsonMember(%d bytes, %q) allocated %d bytes, more than the %d allowed (%d per byte + %d)",
			len(doc), expr, allocated, allocCeiling, jsonAllocPerByte, jsonAllocFixed)
	}
	if elapsed > timeCeiling {
		t.Errorf("jsonMember(%d bytes, %q) took %s, more than %s", len(doc), expr, elapsed, timeCeiling)
	}
	return out, err
}

// echoedValue returns a string value of doc that msg repeats. Checked: every string value of 4
// characters or more (read up to the first syntax error) that is not also a key, not part of
// one, and not part of expr. What msg may hold besides is taken out first: the quoted key, the
// list of top-level keys, and numbers (offsets and counts); a value that is part of vocabulary,
// the text of jsonMember's own errors, is not an echo (a value may spell "JSON").
func echoedValue(msg, doc, expr, vocabulary string) (string, bool) {
	values, keys := jsonStrings(doc)
	if len(values) == 0 {
		return "", false
	}
	residual := strings.ReplaceAll(msg, quoteKey(expr), "\x00")
	var parsed any
	if json.Unmarshal([]byte(doc), &parsed) == nil {
		residual = strings.ReplaceAll(residual, topLevelKeys(parsed), "\x00")
	}
	residual = numberRE.ReplaceAllString(residual, "\x00")
	for _, v := range values {
		if len([]rune(v)) < 4 || strings.Contains(expr, v) || strings.Contains(vocabulary, v) {
			continue
		}
		partOfKey := false
		for _, k := range keys {
			if strings.Contains(k, v) {
				partOfKey = true
				break
			}
		}
		if !partOfKey && strings.Contains(residual, v) {
			return v, true
		}
	}
	return "", false
}

var numberRE = regexp.MustCompile(`\b[0-9]+\b`)

// jsonStrings returns the string values and the keys of a JSON document, as far as it can be
// read: a document that is not JSON still has the strings before its syntax error.
func jsonStrings(doc string) (values, keys []string) {
	dec := json.NewDecoder(strings.NewReader(doc))
	var inObject []bool // per open container: an object?
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil { // io.EOF, or where the document stops being JSON
			return values, keys
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				inObject = append(inObject, true)
				expectKey = true
			case '[':
				inObject = append(inObject, false)
				expectKey = false
			default:
				inObject = inObject[:len(inObject)-1]
				expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
			}
			continue
		case string:
			if expectKey {
				keys = append(keys, v)
				expectKey = false
				continue
			}
			values = append(values, v)
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
}

// jsonErrorVocabulary collects the text of jsonMember's errors for inputs that reach each of
// them, so that echoedValue can tell a message's own words from a repeated value.
func jsonErrorVocabulary() string {
	var b strings.Builder
	docs := []string{`{"k":1}`, `[1]`, `1`, `{}`, `x`, `{"a":1e999}`, strings.Repeat("[", 10001), `"` + strings.Repeat("v", maxJSONValueBytes) + `"`}
	exprs := []string{"k", "nope", "a.b", "a[9]"}
	for _, s := range jsonKeySeeds() {
		exprs = append(exprs, s[1])
	}
	for _, d := range docs {
		for _, e := range exprs {
			if _, err := jsonMember(d, e); err != nil {
				b.WriteString(err.Error())
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// jsonKeySeeds are (document, expression) pairs covering every construct, accepted and refused,
// every error of jsonMember, and the costliest shapes of document.
func jsonKeySeeds() [][2]string {
	const doc = `{"db": {"user": "app-user-3c9d", "password": "hunter2-secret-9f1b", "hosts": [{"name": "h1.example", "port": 5432}, {"name": "h2.example"}]},` +
		` "api-key": "key-secret-77aa", "my key": {"x y": "spaced-secret-1e2f"}, "list": [[1, "n-secret-a1"], [2], "flat-secret-b2"], "html": "<&>", "n": null}`
	stage := "[@,@,@,@,@,@,@,@,@,@]"
	bomb := strings.Repeat(stage+"|", 5) + stage
	flat := "[" + strings.Repeat("1,", 12798) + "1]" // 25,599 bytes
	var wide strings.Builder
	wide.WriteString(`{"k0":"v-secret-0"`)
	for i := 1; wide.Len() < 25000; i++ {
		wide.WriteString(`,"k` + strconv.Itoa(i) + `":"v-secret-` + strconv.Itoa(i) + `"`)
	}
	wide.WriteString("}")
	nestedObjects := strings.Repeat(`{"":`, 5000) + `"deep-secret-42"` + strings.Repeat("}", 5000)
	nestedArrays := strings.Repeat("[", 9000) + `"deep-secret-43"` + strings.Repeat("]", 9000)
	seeds := [][2]string{
		// accepted
		{doc, "api-key"}, {doc, "db"}, {doc, "db.password"}, {doc, `"api-key"`}, {doc, `"my key"."x y"`},
		{doc, `"my\u0020key"`}, {doc, "db.hosts[0].name"}, {doc, "db.hosts[-1]"}, {doc, "db.hosts[*].name"},
		{doc, "db.hosts[].port"}, {doc, "list[]"}, {doc, "list[][]"}, {doc, "list[*][*]"}, {doc, "db.*"},
		{doc, "*.password"}, {doc, "*"}, {doc, "[0]"}, {doc, "[*]"}, {doc, "[]"}, {doc, "html"}, {doc, "n"},
		{doc, "db.nope"}, {doc, "list[99]"}, {flat, "[][][]"}, {flat, "[*][*][*]"}, {flat, "[0]"},
		{wide.String(), "*"}, {wide.String(), "k7"}, {nestedObjects, strings.Repeat(`"".`, 170) + `""`},
		{nestedArrays, "[0][0][0]"}, {nestedArrays, "[][][]"}, {nestedArrays, "[*][*][*][*]"},
		// refused, each construct
		{doc, "abs(@)"}, {doc, "starts_with(@,'x')"}, {doc, "db.password | length(@)"}, {doc, "db||n"},
		{doc, "db&&n"}, {doc, "&db"}, {doc, "@"}, {doc, "list[?@ > `1`]"}, {doc, bomb}, {flat, bomb},
		{`{"k": "v-secret-3"}`, stage + "|" + stage + "|" + stage},
		{doc, "db.[user, password]"}, {doc, "db.{u: user}"}, {doc, "{u: db.user}"}, {doc, "`\"x\"`"},
		{doc, "'db'"}, {doc, "db == db"}, {doc, "db!=n"}, {doc, "!db"}, {doc, "list[0:2]"}, {doc, "list[::-1]"},
		{doc, "(db)"}, {doc, "db . password"}, {doc, ".db"}, {doc, "db..password"}, {doc, "db."},
		{doc, `db"password"`}, {doc, "db*"}, {doc, `"db`}, {doc, `"d\qb"`}, {doc, "0db"}, {doc, "api-key.x"},
		{doc, "dé"}, {doc, "db\xff"}, {doc, "list[][][][]"}, {doc, "list[12345678901]"}, {doc, "list[0"},
		{doc, ""},
		// documents that are not JSON, or not objects
		{`{"a": "open-secret-5d5d"`, "a"}, {`{"a": hunter2-secret}`, "a"}, {`{"a": "x-secret-0", "b": 1e999}`, "a"},
		{`["arr-secret-1"]`, "x"}, {`"scalar-secret-2"`, "x"}, {`{}`, "x"}, {"", "x"},
	}
	return seeds
}

// raceEnabled reports a binary built with -race, which runs everything about ten times slower.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestEchoedValue checks the detector FuzzJSONKey relies on.
func TestEchoedValue(t *testing.T) {
	t.Parallel()
	vocabulary := jsonErrorVocabulary()
	doc := `{"pass": "hunter2-x", "word": "pass", "n": "JSON", "list": ["byte 17"], "k": "a"}`
	for _, tt := range []struct {
		msg, expr string
		want      bool
	}{
		{`objectJSONKey "x": value hunter2-x is not hex`, "x", true},
		{`objectJSONKey "hunter2-x": no`, "hunter2-x", false}, // part of the expression
		{`its top-level keys are "pass"`, "x", false},         // "pass" is a key
		{`the secret's value is not JSON`, "x", false},        // the message's own word
		{`not JSON (syntax error at byte 17)`, "x", false},    // a number of the message
	} {
		if _, got := echoedValue(tt.msg, doc, tt.expr, vocabulary); got != tt.want {
			t.Errorf("echoedValue(%q, %q) = %v, want %v", tt.msg, tt.expr, got, tt.want)
		}
	}
	values, keys := jsonStrings(`{"a": ["v1", {"b": "v2"}], "c": "v3", "d": "v4`)
	if strings.Join(values, ",") != "v1,v2,v3" || strings.Join(keys, ",") != "a,b,c,d" {
		t.Errorf("jsonStrings = %q, %q", values, keys)
	}
}
