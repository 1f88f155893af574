package provider

import (
	"strings"
	"testing"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// TestAccessIsTheHint checks that Access says what the permission-denied hint asks for, for every
// object type, with and without a version history (which needs list too).
func TestAccessIsTheHint(t *testing.T) {
	t.Parallel()
	c := config.MountConfig{VaultName: "kv-demo", Identity: config.Identity{Mode: config.WorkloadIdentity, ClientID: "app"}}
	denied := &keyvault.Error{Kind: keyvault.KindPermissionDenied, Detail: "403 Forbidden"}
	for _, typ := range []config.ObjectType{config.TypeSecret, config.TypeKey, config.TypeCert} {
		for _, history := range []int{0, 3} {
			o := config.Object{Name: "x", Type: typ, History: history}
			role, permissions, ok := Access(o)
			if !ok {
				t.Fatalf("%s: no access", typ)
			}
			if history > 0 != strings.HasSuffix(permissions, " and list") {
				t.Errorf("%s with history %d: permissions %q", typ, history, permissions)
			}
			msg := ObjectError{Object: o, Err: denied}.Message(c)
			for _, want := range []string{`"` + role + `" role on vault "kv-demo"`, "the " + permissions + " permission"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s: message %q lacks %q", typ, msg, want)
				}
			}
		}
	}
	if _, _, ok := Access(config.Object{Type: "blob"}); ok {
		t.Error("an unknown type has access")
	}
}
