package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/emulator"
	"github.com/akv-csi/provider/pkg/provider"
)

// wiRequest is a workload identity mount of objs by the pod namespace/sa with token.
func wiRequest(token, clientID, tenantID, vaultName, namespace, sa string, objs ...string) mountRequest {
	return mountRequest{token: token, params: map[string]string{
		config.KeyVaultName: vaultName, config.TenantID: tenantID, config.ClientID: clientID, config.Objects: objects(objs...),
		config.PodNamespace: namespace, config.ServiceAccountName: sa}}
}

// forge builds a token with the emulator issuer's claims for namespace/sa and a signature no key
// made: what anyone can write into a SecretProviderClass parameter.
func forge(namespace, sa string) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": emulator.BuiltinIssuer, "sub": "system:serviceaccount:" + namespace + ":" + sa,
		"aud": []string{config.WorkloadIdentityAudience}, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}) + "." + base64.RawURLEncoding.EncodeToString([]byte("not a signature"))
}

const plainSecret = "objectName: plain\nobjectType: secret"

// TestForgedTokensNeverGetAFile: a token whose claims name another service account, or whose
// signature no issuer made, never gets a file, whether or not the identity it names is warm; the
// victim keeps mounting.
func TestForgedTokensNeverGetAFile(t *testing.T) {
	for _, warm := range []bool{true, false} {
		name := map[bool]string{true: "warm", false: "cold"}[warm]
		t.Run(name, func(t *testing.T) {
			c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{ResultTTL: 10 * time.Second}})
			victimToken := wiToken(t, "default", "app-sa")
			victim := wiRequest(victimToken, wiApp, tenant, vault, "default", "app-sa", plainSecret)
			if warm {
				if _, err := mount(t, c, victim); err != nil {
					t.Fatal(err)
				}
			}
			attacks := []struct {
				name string
				req  mountRequest
				code codes.Code
				want []string
			}{
				{"another namespace's claims, forged signature",
					wiRequest(forge("default", "app-sa"), wiApp, tenant, vault, "attacker", "evil", plainSecret), codes.PermissionDenied,
					[]string{`names "system:serviceaccount:default:app-sa"`, `runs as "system:serviceaccount:attacker:evil"`}},
				{"a real token of another service account",
					wiRequest(wiToken(t, "default", "app-sa"), wiApp, tenant, vault, "attacker", "evil", plainSecret), codes.PermissionDenied,
					[]string{`names "system:serviceaccount:default:app-sa"`, `runs as "system:serviceaccount:attacker:evil"`}},
				{"the victim's own claims, forged signature",
					wiRequest(forge("default", "app-sa"), wiApp, tenant, vault, "default", "app-sa", plainSecret), codes.Unauthenticated,
					[]string{"AADSTS"}},
				{"an unreadable token",
					wiRequest("not-a-jwt", wiApp, tenant, vault, "default", "app-sa", plainSecret), codes.PermissionDenied,
					[]string{"not a readable JWT"}},
			}
			for _, a := range attacks {
				em.ResetCounters()
				resp, err := mount(t, c, a.req)
				if err == nil {
					t.Fatalf("%s: mounted %d files", a.name, len(resp.GetFiles()))
				}
				st := status.Convert(err)
				if st.Code() != a.code {
					t.Errorf("%s: code %s, want %s: %s", a.name, st.Code(), a.code, st.Message())
				}
				for _, w := range a.want {
					if !strings.Contains(st.Message(), w) {
						t.Errorf("%s: message lacks %q: %s", a.name, w, st.Message())
					}
				}
				if got := em.Counters().KeyVaultGetsTotal(); got != 0 {
					t.Errorf("%s: %d Key Vault reads", a.name, got)
				}
			}
			em.ResetCounters()
			resp, err := mount(t, c, victim)
			if err != nil || string(files(resp)["plain"].GetContents()) != plainValue {
				t.Fatalf("the victim cannot mount after the attacks: %v", err)
			}
			if warm && em.Counters().TokenRequests != 0 {
				t.Errorf("the victim's accepted token was exchanged again (%d token requests)", em.Counters().TokenRequests)
			}
			// A new pod of the victim's workload: its token is exchanged once, then shares.
			if _, err := mount(t, c, wiRequest(wiToken(t, "default", "app-sa"), wiApp, tenant, vault, "default", "app-sa", plainSecret)); err != nil {
				t.Errorf("a new pod of the victim's workload: %v", err)
			}
		})
	}
}

// TestWorkloadIdentitiesStayApart: two namespaces' service accounts of the same name, and the same
// service account federated with apps of two tenants, never see each other's results.
func TestWorkloadIdentitiesStayApart(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{ResultTTL: 10 * time.Second}})
	for round := range 3 {
		var wg sync.WaitGroup
		var okResp, t2Resp *v1alpha1.MountResponse
		var okErr, teamBErr, t2Err error
		wg.Add(3)
		go func() {
			defer wg.Done()
			okResp, okErr = mount(t, c, wiRequest(wiToken(t, "default", "app-sa"), wiApp, tenant, vault, "default", "app-sa", plainSecret))
		}()
		go func() { // same service account name, other namespace, an app with no grant on the vault
			defer wg.Done()
			_, teamBErr = mount(t, c, wiRequest(wiToken(t, "team-b", "app-sa"), wiTeamB, tenant, vault, "team-b", "app-sa", plainSecret))
		}()
		go func() { // the same service account, another tenant's app and vault
			defer wg.Done()
			t2Resp, t2Err = mount(t, c, wiRequest(wiToken(t, "default", "app-sa"), wiT2, tenant2, vault2, "default", "app-sa", plainSecret))
		}()
		wg.Wait()
		if okErr != nil || string(files(okResp)["plain"].GetContents()) != plainValue {
			t.Errorf("round %d: default/app-sa: %v", round, okErr)
		}
		if st := status.Convert(teamBErr); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), wiTeamB) {
			t.Errorf("round %d: team-b/app-sa must be denied by the vault: %v", round, teamBErr)
		}
		if t2Err != nil || string(files(t2Resp)["plain"].GetContents()) != plainValueT2 {
			t.Errorf("round %d: tenant 2 got %v, %q", round, t2Err, files(t2Resp)["plain"].GetContents())
		}
	}
}

// rotationRequest is what the driver's rotation reconciler sends: the versions already written.
func rotationRequest(t *testing.T, r mountRequest, versions *v1alpha1.MountResponse) *v1alpha1.MountRequest {
	req := r.build(t)
	req.CurrentObjectVersion = versions.GetObjectVersion()
	return req
}

func mountRaw(t *testing.T, c v1alpha1.CSIDriverProviderClient, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Mount(ctx, req)
}

// TestRotationReadsFresh: with the result cache on, a rotation mount sees a new version, a deleted
// secret and a revoked identity at once; a first mount within the TTL shares the kept read.
func TestRotationReadsFresh(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{ResultTTL: 30 * time.Second}})
	if _, err := em.AddSecretVersion(vault, "rot", "rot-v1-Qa1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.SetGrants(seed().Grants); _ = em.DeleteSecret(vault, "rot") })
	req := spRequest(spOK, "objectName: rot\nobjectType: secret")
	first, err := mount(t, c, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := em.AddSecretVersion(vault, "rot", "rot-v2-Qa2"); err != nil {
		t.Fatal(err)
	}
	if resp, err := mount(t, c, req); err != nil || string(files(resp)["rot"].GetContents()) != "rot-v1-Qa1" {
		t.Fatalf("a first mount within the TTL shares the kept read (v1): %v", err)
	}
	resp, err := mountRaw(t, c, rotationRequest(t, req, first))
	if err != nil || string(files(resp)["rot"].GetContents()) != "rot-v2-Qa2" {
		t.Fatalf("rotation after a new version: want v2, got %v %q", err, files(resp)["rot"].GetContents())
	}

	if err := em.DeleteSecret(vault, "rot"); err != nil {
		t.Fatal(err)
	}
	_, err = mountRaw(t, c, rotationRequest(t, req, first))
	if st := status.Convert(err); st.Code() != codes.NotFound {
		t.Errorf("rotation after deletion: want NotFound, got %v", err)
	}

	plain := spRequest(spOK, plainSecret)
	kept, err := mount(t, c, plain)
	if err != nil {
		t.Fatal(err)
	}
	var grants []emulator.Grant
	for _, g := range seed().Grants {
		if g.Identity != spOK {
			grants = append(grants, g)
		}
	}
	em.SetGrants(grants)
	_, err = mountRaw(t, c, rotationRequest(t, plain, kept))
	if st := status.Convert(err); st.Code() != codes.PermissionDenied {
		t.Errorf("rotation after revocation: want PermissionDenied, got %v", err)
	}
}

// TestRotationNeverJoinsAnOlderRead: a rotation mount that arrives while a read of the same object
// that started before it is in flight reads again; an ordinary mount joins that read.
func TestRotationNeverJoinsAnOlderRead(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{ResultTTL: 30 * time.Second}})
	t.Cleanup(func() { em.SetFaults(emulator.Faults{}) })
	req := spRequest(spOK, plainSecret)
	first, err := mount(t, c, req) // warm: token and challenge done
	if err != nil {
		t.Fatal(err)
	}
	em.SetFaults(emulator.Faults{KeyVaultLatency: 800 * time.Millisecond})
	em.ResetCounters()
	var wg sync.WaitGroup
	start := func(r *v1alpha1.MountRequest) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := mountRaw(t, c, r); err != nil {
				t.Error(err)
			}
		}()
	}
	start(rotationRequest(t, req, first)) // a rotation read starts (the kept result is not fresh enough)
	time.Sleep(200 * time.Millisecond)
	start(req.build(t)) // an ordinary mount joins it
	time.Sleep(100 * time.Millisecond)
	start(rotationRequest(t, req, first)) // a rotation that arrived after it started reads again
	wg.Wait()
	if got := em.Counters().KeyVaultGets["secret"]; got != 2 {
		t.Errorf("Key Vault GETs = %d, want 2 (the first rotation's, joined by the ordinary mount, and the later rotation's own)", got)
	}
}

// TestDeniedIdentityCannotSpendBudget: once the vault refused an identity, its reads are paced by
// its own and the vault's probation budgets, so its flood does not delay an identity the vault
// serves. (Before its first refusal, a new identity's first read of each object type takes the
// main budget, like any new identity's.)
func TestDeniedIdentityCannotSpendBudget(t *testing.T) {
	c := startProvider(t, provider.Options{Sharing: provider.SharingOptions{VaultRateLimit: 2, VaultBurst: 2}})
	if _, err := mount(t, c, spRequest(spOK, plainSecret)); err != nil {
		t.Fatal(err)
	}
	if _, err := mount(t, c, spRequest(spDenied, threeObjects...)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the denied identity's first mount: %v, want PermissionDenied", err)
	}
	time.Sleep(2 * time.Second) // the budget refills
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, _ = c.Mount(ctx, spRequest(spDenied, threeObjects...).build(t))
		}()
	}
	time.Sleep(100 * time.Millisecond) // the flood is queued
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Mount(ctx, spRequest(spOK, "objectName: plain\nobjectType: secret", "objectName: b64\nobjectType: secret").build(t))
	if err != nil {
		t.Errorf("the allowed identity was starved by a denied one's flood (%v): %v", time.Since(start).Round(time.Millisecond), err)
	}
	wg.Wait()
}
