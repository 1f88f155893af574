package config

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// TestUpstreamForms: what Azure's provider (v1.8.2) mounts, Parse accepts with the same meaning,
// and warns where the form is likely a mistake.
func TestUpstreamForms(t *testing.T) {
	t.Parallel()
	one := func(entry string) string { return objectsYAML(entry) }
	tests := []struct {
		name    string
		objects string
		cloud   string
		// want: the objects' count, the first object's format and mode, the warnings' substrings
		count    int
		format   string
		mode     fs.FileMode
		alias    string // the first object's alias, when set
		warnings []string
	}{
		{name: "a field no provider reads", objects: one("objectName: a\nobjectType: secret\nfilepermission: \"0600\""), count: 1, mode: 0o644,
			warnings: []string{`objects[0] ("a"): field "filepermission" is not read by this provider or Azure's and is ignored (closest known field: filePermission)`}},
		{name: "a field left by another tool", objects: one("objectName: a\nobjectType: secret\nmanagedBy: argo"), count: 1, mode: 0o644,
			warnings: []string{`field "managedBy"`}},
		{name: "a key beside array", objects: one("objectName: a\nobjectType: secret") + "tenant: x\n", count: 1, mode: 0o644,
			warnings: []string{`objects: field "tenant" is not read by this provider or Azure's and is ignored (closest known field: array)`}},
		{name: "pem on a cert", objects: one("objectName: a\nobjectType: cert\nobjectFormat: PEM"), count: 1, format: FormatPEM, mode: 0o644},
		{name: "pem on a key", objects: one("objectName: a\nobjectType: key\nobjectFormat: pem"), count: 1, format: FormatPEM, mode: 0o644},
		{name: "empty array", objects: "array: []", count: 0},
		{name: "null array", objects: "array:", count: 0},
		{name: "no array", objects: "{}", count: 0, warnings: []string{`objects has no "array:" key, so nothing is mounted`}},
		{name: "mode with leading zeros", objects: one("objectName: a\nobjectType: secret\nfilePermission: \"00640\""), count: 1, mode: 0o640},
		{name: "mode with a plus sign", objects: one("objectName: a\nobjectType: secret\nfilePermission: \"+640\""), count: 1, mode: 0o640},
		{name: "mode of one digit", objects: one("objectName: a\nobjectType: secret\nfilePermission: \"4\""), count: 1, mode: 0o4},
		{name: "setuid", objects: one("objectName: a\nobjectType: secret\nfilePermission: \"4755\""), count: 1, mode: 0o755,
			warnings: []string{`objects[0] ("a"): filePermission "4755" has bits beyond 0777, which are not written`, "the file's mode is 0755"}},
		{name: "Go's setuid bit", objects: one("objectName: a\nobjectType: secret\nfilePermission: \"40000755\""), count: 1, mode: 0o755,
			warnings: []string{`filePermission "40000755" has bits beyond 0777`}},
		{name: "largest mode", objects: one("objectName: a\nobjectType: secret\nfilePermission: \"17777777777\""), count: 1, mode: 0o777,
			warnings: []string{"bits beyond 0777"}},
		{name: "negative history", objects: one("objectName: a\nobjectType: secret\nobjectVersionHistory: -2"), count: 1, mode: 0o644,
			warnings: []string{`objects[0] ("a"): objectVersionHistory -2 is negative: one version is mounted`}},
		// The driver cleans the paths it writes (path.Clean); Parse cleans them the same way.
		{name: "alias ./f", objects: one("objectName: a\nobjectType: secret\nobjectAlias: ./f"), count: 1, mode: 0o644, alias: "f"},
		{name: "alias a//b", objects: one("objectName: a\nobjectType: secret\nobjectAlias: a//b"), count: 1, mode: 0o644, alias: "a/b"},
		{name: "alias dir/", objects: one("objectName: a\nobjectType: secret\nobjectAlias: dir/"), count: 1, mode: 0o644, alias: "dir"},
		{name: "alias with a backslash", objects: one("objectName: a\nobjectType: secret\nobjectAlias: 'a\\b'"), count: 1, mode: 0o644, alias: `a\b`},
		{name: "alias with two dots in a name", objects: one("objectName: a\nobjectType: secret\nobjectAlias: my..file"), count: 1, mode: 0o644, alias: "my..file"},
		{name: "AzureCloud", cloud: "AzureCloud", count: 1, mode: 0o644},
		{name: "AzureUSGovernment in capitals", cloud: "AZUREUSGOVERNMENT", count: 1, mode: 0o644},
		{name: "china cloud in lower case", cloud: "azurechinacloud", count: 1, mode: 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			over := map[string]string{}
			if tt.objects != "" {
				over[Objects] = tt.objects
			}
			if tt.cloud != "" {
				over[CloudName] = tt.cloud
			}
			cfg, err := Parse(attrs(over), "", "420", Defaults{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(cfg.Objects) != tt.count {
				t.Fatalf("%d objects, want %d", len(cfg.Objects), tt.count)
			}
			if tt.count > 0 {
				o := cfg.Objects[0]
				if tt.format != "" && o.Format != tt.format {
					t.Errorf("format %q, want %q", o.Format, tt.format)
				}
				if o.Mode != tt.mode {
					t.Errorf("mode %04o, want %04o", o.Mode, tt.mode)
				}
				if tt.alias != "" && o.Alias != tt.alias {
					t.Errorf("alias %q, want %q", o.Alias, tt.alias)
				}
				if o.History != 0 {
					t.Errorf("history %d, want 0 (one version)", o.History)
				}
			}
			got := strings.Join(cfg.Warnings, "\n")
			if len(cfg.Warnings) != min(len(tt.warnings), 1) {
				t.Errorf("warnings %q, want one with %q", cfg.Warnings, tt.warnings)
			}
			for _, w := range tt.warnings {
				if !strings.Contains(got, w) {
					t.Errorf("warnings %q do not contain %q", cfg.Warnings, w)
				}
			}
		})
	}
}

func TestCloudNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"AzurePublicCloud": AzurePublicCloud, "azurecloud": AzurePublicCloud, " AzureCloud ": AzurePublicCloud,
		"AzureChinaCloud": AzureChinaCloud, "AzureUSGovernment": AzureUSGovernmentCloud, "azureusgovernmentcloud": AzureUSGovernmentCloud,
		"AZURESTACKCLOUD": AzureStackCloud,
	} {
		if got, err := ParseCloudName(name); err != nil || got != want {
			t.Errorf("ParseCloudName(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for name, want := range map[string]string{
		"AzureGermanCloud": "AzureGermanCloud was retired", "": `"" is not one of`, "Azure": `"Azure" is not one of AzurePublicCloud`,
	} {
		if _, err := ParseCloudName(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCloudName(%q) error %v, want %q", name, err, want)
		}
	}
}

// TestWarningsBounded: however many entries misspell a field, a mount has MaxWarnings warnings,
// the last one counting the rest, and a warning never repeats more than 64 bytes of a field name.
func TestWarningsBounded(t *testing.T) {
	t.Parallel()
	entries := make([]string, 20)
	for i := range entries {
		entries[i] = fmt.Sprintf("objectName: o%d\nobjectType: secret\n%s: x", i, strings.Repeat("z", 200))
	}
	cfg, err := Parse(attrs(map[string]string{Objects: objectsYAML(entries...)}), "", "420", Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != MaxWarnings || cfg.Warnings[MaxWarnings-1] != "and 11 more warnings like these" {
		t.Fatalf("%d warnings, last %q; want %d, the last counting 11 more", len(cfg.Warnings), cfg.Warnings[len(cfg.Warnings)-1], MaxWarnings)
	}
	for _, w := range cfg.Warnings {
		if strings.Contains(w, strings.Repeat("z", 65)) {
			t.Errorf("warning repeats more than 64 bytes of the field: %q", w)
		}
	}
}

// TestWarningsKeptOnError: a misspelt field that makes an entry invalid is named beside the error.
func TestWarningsKeptOnError(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(attrs(map[string]string{Objects: objectsYAML("objectname: a\nobjectType: secret")}), "", "420", Defaults{})
	if err == nil || !strings.Contains(err.Error(), "objectName is required") {
		t.Fatalf("error %v, want objectName is required", err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], `field "objectname"`) || !strings.Contains(cfg.Warnings[0], "closest known field: objectName") {
		t.Errorf("warnings %q, want the misspelt objectname", cfg.Warnings)
	}
}

// TestMemoKeepsWarnings: a remembered objects parameter gives the same warnings as the first parse.
func TestMemoKeepsWarnings(t *testing.T) {
	t.Parallel()
	m := NewMemo(0)
	a := attrs(map[string]string{Objects: objectsYAML("objectName: a\nobjectType: secret\nobjectTyp: key")})
	first, err1 := m.Parse(a, "", "420", Defaults{})
	again, err2 := m.Parse(a, "", "420", Defaults{})
	if err1 != nil || err2 != nil || len(first.Warnings) != 1 || strings.Join(first.Warnings, "") != strings.Join(again.Warnings, "") {
		t.Fatalf("first %q (%v), again %q (%v): want the same one warning", first.Warnings, err1, again.Warnings, err2)
	}
}
