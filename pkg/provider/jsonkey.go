package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jmespath/go-jmespath"
)

// Bounds of objectJSONKey extraction. Key Vault stores at most 25 KB per secret; a larger value is
// refused before it is parsed, and an error lists at most maxListedKeys key names.
const (
	maxJSONValueBytes = 1 << 20
	maxListedKeys     = 20
	maxListedKeyChars = 64
)

// jsonMember returns one member of a JSON secret value: the top-level key named key if there is
// one, else the result of key as a JMESPath expression. A string is returned as is, any other JSON
// value as compact JSON. Errors never hold the value, only the top-level key names.
func jsonMember(value, key string) (string, error) {
	if len(value) > maxJSONValueBytes {
		return "", invalid("objectJSONKey: the secret's value is %d bytes, more than the %d that are read as JSON", len(value), maxJSONValueBytes)
	}
	var doc any
	if err := json.Unmarshal([]byte(value), &doc); err != nil {
		where := ""
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			where = fmt.Sprintf(" (syntax error at byte %d)", syn.Offset)
		}
		return "", invalid("objectJSONKey %q: the secret's value is not JSON%s; store a JSON document in the secret or remove objectJSONKey", key, where)
	}
	var members map[string]json.RawMessage
	if json.Unmarshal([]byte(value), &members) == nil {
		if raw, ok := members[key]; ok {
			return jsonText(raw)
		}
	}
	expr, compileErr := jmespath.Compile(key)
	if compileErr != nil {
		return "", invalid("objectJSONKey %q is not a top-level key of the secret's JSON (%s) and not a valid JMESPath expression; "+
			"use one of those keys or a JMESPath expression such as a.b or \"my-key\"", key, topLevelKeys(doc))
	}
	result, err := search(expr, doc)
	if err != nil {
		return "", invalid("objectJSONKey %q: the JMESPath expression failed on the secret's JSON (%s): %v", key, topLevelKeys(doc), err)
	}
	if result == nil {
		return "", invalid("objectJSONKey %q: the secret's JSON has no such key (%s); fix objectJSONKey or the stored JSON", key, topLevelKeys(doc))
	}
	if s, ok := result.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(result)
	if err != nil {
		return "", invalid("objectJSONKey %q: the result cannot be written as JSON", key)
	}
	return string(b), nil
}

// search runs a JMESPath expression; the library's few panics on odd input become errors.
func search(expr *jmespath.JMESPath, doc any) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			result, err = nil, errors.New("internal error in the JMESPath library")
		}
	}()
	return expr.Search(doc)
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
