package model

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/akv-csi/provider/hack/internal/harness"
	"github.com/akv-csi/provider/pkg/emulator"
)

// Case is one node-level comparison of the model with the real provider binary: C mounts at
// once of K secrets, cold (each identity's first mount) then warm (WarmRounds more rounds), with
// --result-cache-ttl TTL. Shared: the C mounts are replicas of one workload (one identity), as
// when a deployment's pods land on one node; otherwise each has its own identity, as make bench
// mounts.
type Case struct {
	// Workload: the pods authenticate with workload identity (each pod its own service account
	// token, exchanged at Entra ID), not a service principal.
	Workload bool
	Shared   bool
	C, K     int
	TTL      time.Duration
	// Rotation: the warm rounds carry the versions already written, as the driver's rotation
	// reconciler sends them (they read fresh).
	Rotation bool
}

func (c Case) String() string {
	ids := "C identities"
	if c.Shared {
		ids = "1 identity"
	}
	kind, rotation := "service principal", ""
	if c.Workload {
		kind = "workload identity"
	}
	if c.Rotation {
		rotation = ", rotation"
	}
	return fmt.Sprintf("C=%d K=%d %s (%s) TTL=%v%s", c.C, c.K, ids, kind, c.TTL, rotation)
}

// Comparison is what the model and the binary requested in one phase of a case.
type Comparison struct {
	Case
	Phase         string // cold or warm
	Model, Binary Counts
}

// Within reports whether the model's token, discovery, challenge and read counts are each within
// tol (a fraction) of the binary's.
func (c Comparison) Within(tol float64) bool {
	near := func(m, b int) bool {
		d := float64(m - b)
		return d*d <= tol*tol*float64(b)*float64(b)
	}
	return near(c.Model.Tokens, c.Binary.Tokens) && near(c.Model.Discovery, c.Binary.Discovery) &&
		near(c.Model.Challenges, c.Binary.Challenges) && near(c.Model.Reads, c.Binary.Reads)
}

// ValidationNetwork is the emulator's latency in a comparison: make bench's 50 ms per token
// request (discovery answered at once), and 100 ms per Key Vault request instead of its 20 ms.
// The counts do not depend on it, except in one way: the model's mounts of a round arrive at
// the same instant, the binary's over a few milliseconds (more on a busy machine, as in CI),
// and a replica that arrives after a read in flight has returned reads again. A longer round trip
// keeps the arrivals within it, as in the model.
var ValidationNetwork = Network{KeyVault: 100 * time.Millisecond, Token: 50 * time.Millisecond, Discovery: time.Millisecond}

const (
	validationVault  = "kv-sim"
	validationSecret = "sim-client-secret"
)

// Compare runs every case on the provider and kv-emulator binaries in bin (as make bench runs
// them: service principals, the emulator with ValidationNetwork's latencies, no vault rate limit)
// and in the model, and returns the requests of each phase. dir holds the run's files.
func Compare(bin, dir string, cases []Case, warmRounds int) ([]Comparison, error) {
	identities, maxK := 0, 0
	for _, c := range cases {
		identities += c.C
		maxK = max(maxK, c.K)
	}
	seed := &emulator.Seed{Deterministic: true, Vaults: []emulator.Vault{{Name: validationVault}}}
	for i := range maxK {
		seed.Vaults[0].Secrets = append(seed.Vaults[0].Secrets, emulator.Secret{Name: fmt.Sprintf("s%02d", i),
			Versions: []emulator.SecretVersion{{Value: strings.Repeat("x", 64)}}})
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "issuer.pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	seed.Issuers = []emulator.Issuer{{URL: validationIssuer, PublicKeyFile: keyFile}}
	for i := range identities {
		seed.ServicePrincipals = append(seed.ServicePrincipals, emulator.ServicePrincipal{ClientID: clientID(i), Secrets: []string{validationSecret},
			Federated: []emulator.FederatedCredential{{Issuer: validationIssuer, Subject: validationSubject, Audience: "api://AzureADTokenExchange"}}})
		seed.Grants = append(seed.Grants, emulator.Grant{Identity: clientID(i), Vault: validationVault})
	}
	data, err := yaml.Marshal(seed)
	if err != nil {
		return nil, err
	}
	seedFile := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seedFile, data, 0o600); err != nil {
		return nil, err
	}
	emu, endpoints, err := harness.StartEmulator(dir, bin, seedFile)
	if err != nil {
		return nil, err
	}
	defer emu.Stop()
	if err := harness.Admin(endpoints, http.MethodPut, "/admin/faults", map[string]string{
		"keyVaultLatency": ValidationNetwork.KeyVault.String(), "tokenLatency": ValidationNetwork.Token.String()}, nil); err != nil {
		return nil, err
	}
	counters := func() (emulator.Counters, error) {
		var c emulator.Counters
		err := harness.Admin(endpoints, http.MethodGet, "/admin/counters", nil, &c)
		return c, err
	}

	var out []Comparison
	next := 0
	providers := map[time.Duration]*harness.Provider{}
	defer func() {
		for _, p := range providers {
			p.Stop()
		}
	}()
	for _, c := range cases {
		prov := providers[c.TTL]
		if prov == nil {
			for _, p := range providers { // one provider process at a time
				p.Stop()
			}
			clear(providers)
			if prov, err = harness.StartProvider(dir, bin, endpoints, "--result-cache-ttl="+c.TTL.String(),
				"--vault-rate-limit=1000000", "--vault-burst=1000000"); err != nil {
				return nil, err
			}
			providers[c.TTL] = prov
		}
		ids := make([]string, c.C)
		tokens := make([]string, c.C)
		for i := range ids {
			if !c.Shared || i == 0 {
				next++
			}
			ids[i] = clientID(next - 1)
			if c.Workload { // each pod its own token, as the kubelet requests one per pod
				if tokens[i], err = podToken(key, fmt.Sprintf("%s-pod-%d", ids[i], i)); err != nil {
					return nil, err
				}
			}
		}
		var phases [2]Counts
		for round := range 1 + warmRounds {
			before, err := counters()
			if err != nil {
				return nil, err
			}
			if err := mountRound(prov, endpoints.TenantID, ids, tokens, c.K, round > 0 && c.Rotation); err != nil {
				return nil, fmt.Errorf("%v: %w", c, err)
			}
			after, err := counters()
			if err != nil {
				return nil, err
			}
			add(&phases[min(round, 1)], before, after)
		}
		model := modelCase(c, warmRounds)
		out = append(out, Comparison{Case: c, Phase: "cold", Model: model[0], Binary: phases[0]},
			Comparison{Case: c, Phase: "warm", Model: model[1], Binary: phases[1]})
	}
	return out, nil
}

func clientID(i int) string { return fmt.Sprintf("cccccccc-0000-4000-8000-%012d", i) }

// The cluster's service account issuer, and the subject of the pods harness.MountRequest mounts.
const (
	validationIssuer  = "https://oidc.sim.test/issuer"
	validationSubject = "system:serviceaccount:default:demo-sa"
)

// podToken is what the kube-apiserver's TokenRequest returns for one pod of the service account.
func podToken(key *rsa.PrivateKey, pod string) (string, error) {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": validationIssuer, "sub": validationSubject, "aud": []string{"api://AzureADTokenExchange"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": pod,
	})
	t.Header["kid"] = "sim"
	return t.SignedString(key)
}

func add(to *Counts, before, after emulator.Counters) {
	to.Tokens += int(after.TokenRequests - before.TokenRequests)
	to.Discovery += int(after.DiscoveryRequests - before.DiscoveryRequests)
	to.Challenges += int(after.Challenges - before.Challenges)
	to.Reads += int(after.KeyVaultGetsTotal() - before.KeyVaultGetsTotal())
}

// modelCase runs a case in the model: cold, then the warm rounds added up.
func modelCase(c Case, warmRounds int) [2]Counts {
	settings := DefaultSettings()
	settings.ResultTTL, settings.VaultRateLimit, settings.VaultBurst = c.TTL, 1e6, 1e6
	run := NodeRun{Policy: Shared, Kind: ServicePrincipal, Net: ValidationNetwork, Settings: settings}
	if c.Workload {
		run.Kind = WorkloadIdentity
	}
	for round := range 1 + warmRounds {
		var mounts []NodeMount
		for i := range c.C {
			id := i
			if c.Shared {
				id = 0
			}
			mounts = append(mounts, NodeMount{Identity: id, Pod: i, Objects: c.K, Rotation: round > 0 && c.Rotation})
		}
		run.Rounds = append(run.Rounds, mounts)
	}
	rounds := RunNode(run)
	var out [2]Counts
	for i, r := range rounds {
		p := &out[min(i, 1)]
		p.Tokens += r.Tokens
		p.Discovery += r.Discovery
		p.Challenges += r.Challenges
		p.Reads += r.Reads
	}
	return out
}

// mountRound mounts once per identity in ids, all at once, as the driver does.
func mountRound(prov *harness.Provider, tenant string, ids, tokens []string, k int, rotation bool) error {
	objects := make([]string, k)
	for i := range objects {
		objects[i] = fmt.Sprintf("objectName: s%02d\nobjectType: secret", i)
	}
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			req := harness.MountRequest(map[string]string{"keyvaultName": validationVault, "tenantId": tenant},
				map[string]string{"clientid": id, "clientsecret": validationSecret}, "", objects)
			if tokens[i] != "" {
				req = harness.MountRequest(map[string]string{"keyvaultName": validationVault, "tenantId": tenant, "clientID": id}, nil, tokens[i], objects)
			}
			if rotation { // what the reconciler sends: the versions written (any will do)
				req.CurrentObjectVersion = []*v1alpha1.ObjectVersion{{Id: "secret/s00", Version: "0"}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := prov.Client.Mount(ctx, req)
			if err == nil && len(resp.GetFiles()) != k {
				err = fmt.Errorf("%d files, want %d", len(resp.GetFiles()), k)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// FormatCounts writes token/discovery/challenge/reads.
func FormatCounts(c Counts) string {
	return fmt.Sprintf("%d/%d/%d/%d", c.Tokens, c.Discovery, c.Challenges, c.Reads)
}
