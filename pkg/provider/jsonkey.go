package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
)

// Bounds of objectJSONKey extraction. Key Vault stores at most 25 KB per secret; a larger value is
// refused before it is parsed, and an error lists at most maxListedKeys key names.
const (
	maxJSONValueBytes = 1 << 20
	maxListedKeys     = 20
	maxListedKeyChars = 64
	// maxJSONFlattens bounds the flattens ([]) of one path: see checkJSONPath for why.
	maxJSONFlattens = 3
	// maxJSONIndexDigits bounds [N]: no array of a 1 MiB value has a billion elements, and
	// go-jmespath reads N with strconv.Atoi, which must not overflow.
	maxJSONIndexDigits = 9
	// maxQuotedKeyChars is how much of an objectJSONKey an error repeats.
	maxQuotedKeyChars = 64
)

// jsonPathAccepted says what objectJSONKey may be, in every error that refuses one.
const jsonPathAccepted = `objectJSONKey is a top-level key of the secret's JSON or a JMESPath path ` +
	`(names, "quoted names", .name, [N], [*], []), such as db.hosts[0].name`

// jsonMember returns one member of a JSON secret value: the top-level key named key if there is
// one, else the result of key as a JMESPath path (checkJSONPath says which expressions are
// paths; any other is refused). A string is returned as is, any other JSON value as compact
// JSON. Errors never hold the value, only the top-level key names, byte offsets and the key.
func jsonMember(value, key string) (string, error) {
	if len(value) > maxJSONValueBytes {
		return "", invalid("objectJSONKey: the secret's value is %d bytes, more than the %d that are read as JSON", len(value), maxJSONValueBytes)
	}
	var doc any
	if err := json.Unmarshal([]byte(value), &doc); err != nil {
		return "", invalid("objectJSONKey %s: the secret's value is not JSON%s; store a JSON document in the secret or remove objectJSONKey", quoteKey(key), jsonProblem(err))
	}
	if m, ok := doc.(map[string]any); ok {
		if _, ok := m[key]; ok {
			// The member as stored (its digits, its member order), not as re-encoded from doc.
			var members map[string]json.RawMessage
			if json.Unmarshal([]byte(value), &members) == nil {
				if raw, ok := members[key]; ok {
					return jsonText(raw)
				}
			}
		}
	}
	if r := checkJSONPath(key); r != nil {
		return "", invalid("objectJSONKey %s: %s at byte %d is not accepted: %s; %s", quoteKey(key), r.construct, r.offset, jsonPathAccepted, topLevelKeys(doc))
	}
	result, err := searchPath(key, doc)
	if err != nil {
		return "", invalid("objectJSONKey %s: the JMESPath library could not evaluate this path on the secret's JSON; %s", quoteKey(key), topLevelKeys(doc))
	}
	if result == nil {
		return "", invalid("objectJSONKey %s: the secret's JSON has no such key (%s); fix objectJSONKey or the stored JSON", quoteKey(key), topLevelKeys(doc))
	}
	if s, ok := result.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(result)
	if err != nil {
		return "", invalid("objectJSONKey %s: the result cannot be written as JSON", quoteKey(key))
	}
	return string(b), nil
}

// jsonProblem says where a value is not JSON, by byte offset only: encoding/json's messages
// quote the character they stopped at, and a number out of range by its digits.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn) && strings.Contains(syn.Error(), "max depth"):
		return fmt.Sprintf(" (nested too deeply at byte %d)", syn.Offset)
	case errors.As(err, &syn):
		return fmt.Sprintf(" (syntax error at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf(" (a number out of range before byte %d)", typ.Offset)
	}
	return ""
}

// searchPath evaluates an accepted path with go-jmespath. The library's errors and panics become
// one error of our own: its messages print the values they were given, here the secret.
func searchPath(key string, doc any) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			result, err = nil, errors.New("panic in the JMESPath library")
		}
	}()
	expr, err := jmespath.Compile(key)
	if err != nil {
		return nil, errors.New("the JMESPath library refused the path")
	}
	result, err = expr.Search(doc)
	if err != nil {
		return nil, errors.New("the JMESPath library failed")
	}
	return result, nil
}

// jsonText writes a JSON string as its text and any other JSON value compactly, in stored order.
func jsonText(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", invalid("objectJSONKey: the member cannot be written as JSON")
	}
	return b.String(), nil
}

// quoteKey quotes an objectJSONKey for an error, cut to maxQuotedKeyChars bytes (at a character
// boundary). The key comes from the SecretProviderClass, not from the secret.
func quoteKey(key string) string {
	if len(key) <= maxQuotedKeyChars {
		return fmt.Sprintf("%q", key)
	}
	cut := maxQuotedKeyChars
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return fmt.Sprintf("%q...", key[:cut])
}

// pathRefusal is the first construct of an objectJSONKey that is not a path, and where it starts.
type pathRefusal struct {
	construct string
	offset    int
}

// pathToken is one token of a path.
type pathToken struct {
	kind   pathKind
	offset int
}

type pathKind int

const (
	pathName     pathKind = iota // a name, unquoted or "quoted"
	pathDot                      // .
	pathStar                     // * (a wildcard over an object's values)
	pathIndex                    // [N]
	pathWildcard                 // [*]
	pathFlatten                  // []
)

// checkJSONPath returns nil when key is a JMESPath path of the subset objectJSONKey accepts, else
// the first construct that is not:
//
//	path    = first { step }
//	first   = name | quoted | bracket
//	step    = "." name | "." quoted | bracket
//	bracket = "[" ["-"] digits "]" | "[*]" | "[]"
//	name    = [A-Za-z_][A-Za-z0-9_]*      quoted = a JSON string: "..." with JSON escapes
//
// with no spaces and at most maxJSONFlattens flattens. go-jmespath parses each such path into
// field, index, projection ([*]) and flatten ([]) nodes, nothing else. (An object wildcard, * or
// .*, would be bounded too, but go-jmespath returns the members in Go's random map order.)
//
// Why these are bounded: every step maps each node selected so far to some of its own
// descendants (a member, an element, all members or elements) or, for a flatten, to itself or its
// elements. The nodes selected after each step therefore never contain one another: they are
// disjoint subtrees of the document. The result holds each of them once, inside at most one new
// array per array or object of the document, so it is at most about the size of the document (6
// times at worst: re-encoding writes "<" as "\u003c"). Time: each step visits each selected node
// once, and the rest of the path is evaluated once per element of a projection, so it is
// O(len(key) x document). Allocation: every later selection lies within an earlier one, and a
// descending step selects strict descendants of its input, so no node is selected by two
// descending steps: together they allocate O(document). A flatten may select the same nodes again
// (a flat array stays flat), so each costs up to O(document) more: hence maxJSONFlattens.
// Functions, pipes, multi-selects and literals break all of this: [@,@,...]|[@,...] copies the
// document 10 times per stage, and a function's type error prints its argument.
func checkJSONPath(key string) *pathRefusal {
	tokens, refused := lexJSONPath(key)
	if refused != nil {
		return refused
	}
	if len(tokens) == 0 {
		return &pathRefusal{"an empty path", 0}
	}
	flattens := 0
	prev := pathDot // at the start, as after a dot, a name or * may come, but a dot may not
	for i, t := range tokens {
		switch t.kind {
		case pathDot:
			if i == 0 {
				return &pathRefusal{"a leading dot", t.offset}
			}
			if prev == pathDot {
				return &pathRefusal{"an empty name between dots", t.offset}
			}
			if i == len(tokens)-1 {
				return &pathRefusal{"a trailing dot", t.offset}
			}
		case pathName, pathStar:
			if prev != pathDot {
				what := "a name"
				if t.kind == pathStar {
					what = "a wildcard (*)"
				}
				return &pathRefusal{what + " that does not follow a dot", t.offset}
			}
		case pathIndex, pathWildcard, pathFlatten:
			if prev == pathDot && i > 0 { // the lexer refuses this first
				return &pathRefusal{"a multi-select list (.[...])", tokens[i-1].offset}
			}
			if t.kind == pathFlatten {
				if flattens++; flattens > maxJSONFlattens {
					return &pathRefusal{fmt.Sprintf("a flatten ([]) beyond the %d allowed", maxJSONFlattens), t.offset}
				}
			}
		}
		prev = t.kind
	}
	return nil
}

// lexJSONPath splits key into path tokens, or names the first construct that is none of them.
func lexJSONPath(key string) ([]pathToken, *pathRefusal) {
	if !utf8.ValidString(key) {
		for i := 0; i < len(key); {
			r, n := utf8.DecodeRuneInString(key[i:])
			if r == utf8.RuneError && n <= 1 {
				return nil, &pathRefusal{"a byte that is not UTF-8", i}
			}
			i += n
		}
	}
	var tokens []pathToken
	for i := 0; i < len(key); {
		c := key[i]
		switch {
		case isNameStart(c):
			start := i
			for i < len(key) && isNameByte(key[i]) {
				i++
			}
			if i < len(key) && key[i] == '(' {
				return nil, &pathRefusal{"a function call", i}
			}
			tokens = append(tokens, pathToken{pathName, start})
		case c == '"':
			end, refused := quotedEnd(key, i)
			if refused != nil {
				return nil, refused
			}
			tokens = append(tokens, pathToken{pathName, i})
			i = end
		case c == '.':
			if i+1 < len(key) && key[i+1] == '{' {
				return nil, &pathRefusal{"a multi-select hash (.{...})", i}
			}
			if i+1 < len(key) && key[i+1] == '[' {
				return nil, &pathRefusal{"a multi-select list (.[...])", i}
			}
			tokens = append(tokens, pathToken{pathDot, i})
			i++
		case c == '*':
			// go-jmespath walks a Go map for it, so the members would come in a new order on
			// every read: the file would change at every rotation poll.
			return nil, &pathRefusal{"an object wildcard (*: its members come in a new order on every read)", i}
		case c == '[':
			t, end, refused := bracket(key, i)
			if refused != nil {
				return nil, refused
			}
			tokens = append(tokens, t)
			i = end
		default:
			return nil, &pathRefusal{refusedConstruct(key, i), i}
		}
	}
	return tokens, nil
}

// bracket reads [N], [*] or [] at key[i].
func bracket(key string, i int) (pathToken, int, *pathRefusal) {
	rest := key[i+1:]
	switch {
	case strings.HasPrefix(rest, "*]"):
		return pathToken{pathWildcard, i}, i + 3, nil
	case strings.HasPrefix(rest, "]"):
		return pathToken{pathFlatten, i}, i + 2, nil
	case strings.HasPrefix(rest, "?"):
		return pathToken{}, 0, &pathRefusal{"a filter ([?...])", i}
	case strings.HasPrefix(rest, ":"):
		return pathToken{}, 0, &pathRefusal{"a slice ([a:b])", i}
	case rest == "":
		return pathToken{}, 0, &pathRefusal{"an unclosed bracket", i}
	case rest[0] != '-' && (rest[0] < '0' || rest[0] > '9'):
		return pathToken{}, 0, &pathRefusal{"a multi-select list ([a, b])", i}
	}
	j := i + 1
	if key[j] == '-' {
		j++
	}
	digits := j
	for j < len(key) && key[j] >= '0' && key[j] <= '9' {
		j++
	}
	switch {
	case j == digits:
		return pathToken{}, 0, &pathRefusal{"a '-' that does not start an index", i + 1}
	case j < len(key) && key[j] == ':':
		return pathToken{}, 0, &pathRefusal{"a slice ([a:b])", i}
	case j-digits > maxJSONIndexDigits:
		return pathToken{}, 0, &pathRefusal{fmt.Sprintf("an index of more than %d digits", maxJSONIndexDigits), i}
	case j >= len(key):
		return pathToken{}, 0, &pathRefusal{"an unclosed bracket", i}
	case key[j] != ']':
		return pathToken{}, 0, &pathRefusal{refusedConstruct(key, j) + " inside an index", j}
	}
	return pathToken{pathIndex, i}, j + 1, nil
}

// quotedEnd returns the offset just past the quoted name that starts at key[i] (a JSON string).
func quotedEnd(key string, i int) (int, *pathRefusal) {
	for j := i + 1; j < len(key); j++ {
		if c := key[j]; c < 0x20 || c == 0x7f { // JSON strings have none; the parser refuses them too
			return 0, &pathRefusal{"a control character in a quoted name", j}
		}
		switch key[j] {
		case '"':
			return j + 1, nil
		case '\\':
			if j+1 >= len(key) {
				return 0, &pathRefusal{"an unterminated quoted name", i}
			}
			switch key[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+6 > len(key) || !isHex(key[j+2:j+6]) {
					return 0, &pathRefusal{`an escape \u without 4 hexadecimal digits`, j}
				}
				j += 5
			default:
				return 0, &pathRefusal{"an escape that JSON does not have", j}
			}
		}
	}
	return 0, &pathRefusal{"an unterminated quoted name", i}
}

// refusedConstruct names the JMESPath construct (or character) that starts at key[i].
func refusedConstruct(key string, i int) string {
	rest := key[i:]
	for _, c := range []struct{ prefix, name string }{
		{"||", "an or-expression (||)"},
		{"&&", "an and-expression (&&)"},
		{"==", "a comparison (==)"},
		{"!=", "a comparison (!=)"},
		{"<=", "a comparison (<=)"},
		{">=", "a comparison (>=)"},
		{"|", "a pipe (|)"},
		{"&", "an expression reference (&)"},
		{"@", "the current node (@)"},
		{"`", "a literal (`...`)"},
		{"'", "a raw string literal ('...')"},
		{"{", "a multi-select hash ({...})"},
		{"(", "a parenthesis"},
		{"<", "a comparison (<)"},
		{">", "a comparison (>)"},
		{"!", "a negation (!)"},
		{",", "a comma"},
		{":", "a colon"},
		{"]", "an unmatched ]"},
		{"}", "an unmatched }"},
		{")", "an unmatched )"},
	} {
		if strings.HasPrefix(rest, c.prefix) {
			return c.name
		}
	}
	r, _ := utf8.DecodeRuneInString(rest)
	switch {
	case r == ' ' || r == '\u00a0' || r == '\u3000':
		return "a space"
	case r >= '0' && r <= '9':
		return `a name that starts with a digit (quote it: "0abc")`
	case r == '-':
		return `a '-' outside quotes (quote such a name: "my-key")`
	}
	return fmt.Sprintf("the character %q outside quotes", r)
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameByte(c byte) bool { return isNameStart(c) || (c >= '0' && c <= '9') }

func isHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// topLevelKeys names the top-level keys of a JSON document for an error (names only, never
// values), or says what the document is when it is not an object.
func topLevelKeys(doc any) string {
	m, ok := doc.(map[string]any)
	if !ok {
		kind := "a scalar"
		if _, isArray := doc.([]any); isArray {
			kind = "an array"
		}
		return "the JSON is " + kind + ", not an object"
	}
	if len(m) == 0 {
		return "the JSON object is empty"
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	more := ""
	if len(names) > maxListedKeys {
		more = fmt.Sprintf(" and %d more", len(names)-maxListedKeys)
		names = names[:maxListedKeys]
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		if len(n) > maxListedKeyChars {
			n = n[:maxListedKeyChars] + "..."
		}
		quoted[i] = fmt.Sprintf("%q", n)
	}
	return "its top-level keys are " + strings.Join(quoted, ", ") + more
}
