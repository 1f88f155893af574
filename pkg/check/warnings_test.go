package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarnsIgnoredFields: a SecretProviderClass that Azure's provider mounts while ignoring a
// misspelt field passes the check, which says what is ignored and the field meant.
func TestWarnsIgnoredFields(t *testing.T) {
	t.Parallel()
	spc := `apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: typo
  namespace: shop
spec:
  provider: azure
  parameters:
    keyvaultName: kv-shop
    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
    clientID: 00000000-0000-0000-0000-000000000001
    objects: |
      array:
        - |
          objectName: db-password
          objectType: secret
          filepermission: "0400"
`
	file := filepath.Join(t.TempDir(), "typo.yaml")
	if err := os.WriteFile(file, []byte(spc), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, text, js := runCheck(t, offline(file))
	if !rep.OK || len(rep.Classes) != 1 {
		t.Fatalf("the check refuses what the provider mounts:\n%s", text)
	}
	const want = `objects[0] ("db-password"): field "filepermission" is not read by this provider or Azure's and is ignored (closest known field: filePermission)`
	if w := rep.Classes[0].Warnings; len(w) != 1 || w[0] != want {
		t.Errorf("warnings %q, want [%q]", w, want)
	}
	if !strings.Contains(text, want) || !strings.Contains(js, `closest known field: filePermission`) {
		t.Errorf("the text or JSON report lacks the warning:\n%s\n%s", text, js)
	}
}
