package provider

import (
	"strings"
	"testing"
)

func TestJSONMember(t *testing.T) {
	t.Parallel()
	doc := `{"db-password": "pw-1", "a": {"b": [10, {"c": "deep"}], "n": null}, "num": 12345678901234567890, "t": true, "a.b": "dotted", "obj": {"z": 1, "y": [1, 2]}}`
	tests := []struct {
		key, want string
	}{
		{"db-password", "pw-1"},              // exact key, not a JMESPath identifier
		{"a.b", "dotted"},                    // an exact key wins over the expression
		{"num", "12345678901234567890"},      // exact key: stored digits
		{"t", "true"},                        // non-string: JSON
		{"obj", `{"z":1,"y":[1,2]}`},         // exact key: stored order, compact
		{"a.b[1].c", "deep"},                 // JMESPath
		{`"db-password"`, "pw-1"},            // JMESPath quoted identifier
		{"a.b[0]", "10"},                     // a number
		{"keys(obj) | sort(@)", `["y","z"]`}, // functions
		{"a.n", ""},                          // null result: see the error case below
		{"length(a.b)", "2"},                 // a computed number
		{"obj.y[?@ > `1`]", "[2]"},           // filters
		{"{p: \"db-password\", t: t}", `{"p":"pw-1","t":true}`}, // multiselect, keys sorted
	}
	for _, tt := range tests {
		got, err := jsonMember(doc, tt.key)
		if tt.key == "a.n" {
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
		{"an array", `["value-secret"]`, "a", []string{"the JSON is an array, not an object"}},
		{"a scalar", `"value-secret"`, "a", []string{"the JSON is a scalar, not an object"}},
		{"empty object", `{}`, "a", []string{"the JSON object is empty"}},
		{"invalid expression", `{"x": "value-secret"}`, "a..b", []string{"not a valid JMESPath expression", `"x"`}},
		{"many keys", many, "nope", []string{"and 10 more"}},
		{"too large", `"` + strings.Repeat("v", maxJSONValueBytes) + `"`, "a", []string{"more than the 1048576 that are read as JSON"}},
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
