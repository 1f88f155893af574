package config

import "testing"

// TestIdentityRuleFor checks that IdentityRuleFor names the step of upstream's order that decides
// each of the 64 combinations of the identity inputs, whether it picks an identity or refuses.
func TestIdentityRuleFor(t *testing.T) {
	t.Parallel()
	for _, in := range allIdentityInputs() {
		if got, want := IdentityRuleFor(identityAttrs(in), identitySecrets(in)), upstream(in).step; got != want {
			t.Errorf("%s: IdentityRuleFor = %d, upstream decides at step %d", in, got, want)
		}
	}
	if got := IdentityRuleFor(map[string]string{UseVMManagedIdentity: "yes"}, nil); got != 0 {
		t.Errorf("a flag that is not a boolean: IdentityRuleFor = %d, want 0", got)
	}
}
