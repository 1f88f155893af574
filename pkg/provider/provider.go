// Package provider is the Mount pipeline: it resolves the cloud, finds or builds the credential
// and Key Vault client of the mount's identity, reads every object in parallel, and renders the
// files exactly as Azure's provider does. A mount is all or nothing.
package provider

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"k8s.io/klog/v2"

	"github.com/akv-csi/provider/pkg/auth"
	"github.com/akv-csi/provider/pkg/cloud"
	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
	"github.com/akv-csi/provider/pkg/metrics"
)

// DefaultParallelism is the default bound on the concurrent Key Vault reads of one mount
// (--parallel-fetches).
//
// Why 16: a mount of up to 16 objects, which covers most SecretProviderClasses, then reads them
// all at once and completes in one Key Vault round trip (with 8, ten objects took two). It is a
// bound, not the object count, so that one large mount cannot flood the vault's limiter, which
// every mount on the node shares (--vault-rate-limit 200/s, --vault-burst 400): a 50-object
// mount takes at most 16 of the 400 tokens at a time (4%), and when the bucket is empty the
// reads of other mounts queue behind at most 16 of its reads (80 ms at 200/s), not 50 (250 ms),
// or 256 for the largest SecretProviderClass allowed (1.3 s).
const DefaultParallelism = 16

// Options are the daemon-wide settings of the pipeline.
type Options struct {
	// ConstructPEMChain orders a certificate's PEM chain leaf → root (--construct-pem-chain).
	ConstructPEMChain bool
	// WriteCertAndKeyInSeparateFiles adds <file>.crt and <file>.key for a certificate's secret.
	WriteCertAndKeyInSeparateFiles bool
	// Parallelism bounds the concurrent Key Vault reads of one mount (default DefaultParallelism).
	Parallelism int
	// MaxSelectedObjects bounds the objects one selection (objectNamePrefix, objectTags) may
	// match (--max-selected-objects, default DefaultMaxSelectedObjects).
	MaxSelectedObjects int
	// MaxConcurrentMounts bounds the mounts served at once (--max-concurrent-mounts, default
	// DefaultMaxConcurrentMounts).
	MaxConcurrentMounts int
	// MaxMountBytes bounds both the bytes one mount reads from Key Vault and the bytes of its files
	// (--max-response-bytes, default DefaultMaxMountBytes).
	MaxMountBytes int
	// ManagedIdentity is who may use the node's managed identities.
	ManagedIdentity ManagedIdentityPolicy
	Auth            auth.Options
	KeyVault        keyvault.Options
	Clients         ClientCacheOptions
	Sharing         SharingOptions
	// Metrics records reads and certificate expiry (default: nothing). It is also passed to Auth
	// and KeyVault when those have none.
	Metrics metrics.Recorder
	// NewClient builds the Key Vault client of an identity for a vault (default: the Azure SDK
	// clients). Tests of the pipeline alone replace it.
	NewClient func(vaultURL string, cred azcore.TokenCredential) (keyvault.Client, error)
	// NewCredential builds an identity's credential (default: auth.NewCredential). Tests of the
	// pipeline alone replace it.
	NewCredential func(id config.Identity, tenantID string, env cloud.Environment, a *auth.Assertion, o auth.Options) (azcore.TokenCredential, error)
}

// ManagedIdentityPolicy says which pods may mount with the node's managed identities
// (useVMManagedIdentity). Any pod on a node can name them, as with Azure's provider: a
// SecretProviderClass proves nothing about the pod, so the operator decides.
type ManagedIdentityPolicy struct {
	// Namespaces whose pods may use them (--managed-identity-namespaces); nil allows every
	// namespace, an empty non-nil list none.
	Namespaces []string
	// AllowSelections lets them list a vault (objectNamePrefix, objectTags), which reads every
	// object name and tag of the vault (--allow-managed-identity-selections).
	AllowSelections bool
}

// check refuses a mount with the node's managed identity that the policy does not allow.
func (m ManagedIdentityPolicy) check(cfg config.MountConfig) *keyvault.Error {
	if cfg.Identity.Mode != config.ManagedIdentity {
		return nil
	}
	if m.Namespaces != nil && !slices.Contains(m.Namespaces, cfg.Pod.Namespace) {
		return &keyvault.Error{Kind: keyvault.KindPermissionDenied, Code: codePolicy, Detail: fmt.Sprintf(
			"this node's provider does not let namespace %q use the node's managed identity (--managed-identity-namespaces, chart value managedIdentity.namespaces): "+
				"use workload identity, or ask the cluster operator to allow the namespace", cfg.Pod.Namespace)}
	}
	if !m.AllowSelections {
		for _, o := range cfg.Objects {
			if o.Selection() {
				return &keyvault.Error{Kind: keyvault.KindPermissionDenied, Code: codePolicy, Detail: fmt.Sprintf(
					"objectNamePrefix and objectTags list the vault, which this node's provider does not allow with the node's managed identity (%s) "+
						"(--allow-managed-identity-selections, chart value managedIdentity.allowSelections): name the objects, or use workload identity", o.Describe())}
			}
		}
	}
	return nil
}

// File is one file of a mount, relative to the target path.
type File struct {
	Path     string
	Mode     fs.FileMode
	Contents []byte
}

// ObjectVersion is the Key Vault version written for an object, as reported to the driver.
type ObjectVersion struct {
	ID      string
	Version string
}

// Result is what a mount writes.
type Result struct {
	Files    []File
	Versions []ObjectVersion
}

// Provider runs mounts. It is safe for concurrent use.
type Provider struct {
	opts    Options
	clients *clientCache
	turns   chan struct{} // one per mount being served
	large   chan struct{} // one per large mount (budget.go)
}

// New returns a Provider.
func New(o Options) *Provider {
	if o.Parallelism <= 0 {
		o.Parallelism = DefaultParallelism
	}
	if o.MaxSelectedObjects <= 0 {
		o.MaxSelectedObjects = DefaultMaxSelectedObjects
	}
	if o.MaxConcurrentMounts <= 0 {
		o.MaxConcurrentMounts = DefaultMaxConcurrentMounts
	}
	if o.MaxMountBytes <= 0 {
		o.MaxMountBytes = DefaultMaxMountBytes
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Nop{}
	}
	if o.Auth.Metrics == nil {
		o.Auth.Metrics = o.Metrics
	}
	if o.KeyVault.Metrics == nil {
		o.KeyVault.Metrics = o.Metrics
	}
	p := &Provider{opts: o, turns: make(chan struct{}, o.MaxConcurrentMounts), large: make(chan struct{}, maxLargeMounts)}
	if p.opts.NewClient == nil {
		p.opts.NewClient = func(vaultURL string, cred azcore.TokenCredential) (keyvault.Client, error) {
			return keyvault.New(vaultURL, cred, o.KeyVault)
		}
	}
	p.clients = newClientCache(o.Clients, o.Sharing, o.Metrics, o.NewCredential)
	return p
}

// Mount reads every object of cfg and returns the files to write, or an error naming every object
// that failed (and then no files).
func (p *Provider) Mount(ctx context.Context, cfg config.MountConfig) (Result, error) {
	if cfg.Rotation {
		ctx = withNotBefore(ctx, time.Now())
	}
	if cfg.Identity.Token != "" {
		if err := auth.CheckTokenSubject(cfg.Identity.Token, cfg.Pod); err != nil {
			return Result{}, &MountError{Config: cfg, Err: &keyvault.Error{Kind: keyvault.KindPermissionDenied, Code: codeTokenSubject, Detail: err.Error()}}
		}
	}
	if err := p.opts.ManagedIdentity.check(cfg); err != nil {
		return Result{}, &MountError{Config: cfg, Err: err}
	}
	if n := worstCaseFiles(cfg, p.opts.MaxSelectedObjects); n > config.MaxFiles {
		return Result{}, &MountError{Config: cfg, Err: &keyvault.Error{Kind: keyvault.KindInvalidArgument, Detail: fmt.Sprintf(
			"the objects could write up to %d files (each objectNamePrefix/objectTags selection counts as the %d objects it may match, --max-selected-objects), "+
				"more than the %d allowed in one mount: use fewer selections or split the SecretProviderClass", n, p.opts.MaxSelectedObjects, config.MaxFiles)}}
	}
	if len(cfg.Objects) == 0 {
		return Result{}, nil // an empty array mounts nothing, as with Azure's provider: no token, no read
	}
	release, err := p.takeTurn(ctx)
	if err != nil {
		return Result{}, &MountError{Config: cfg, Err: keyvault.AsError(err)}
	}
	defer release()
	budget := p.newBudget()
	defer budget.release()
	ctx, stop := context.WithCancel(keyvault.WithReadCharge(withBudget(ctx, budget), budget.chargeRead)) // a passed bound stops the mount's other reads
	defer stop()
	env, err := resolveCloud(ctx, cfg)
	if err != nil {
		return Result{}, &MountError{Config: cfg, Err: keyvault.AsError(err)}
	}
	shared, err := p.clients.get(ctx, cfg, cfg.VaultName, env, p.opts.Auth, p.opts.NewClient)
	if err != nil {
		return Result{}, &MountError{Config: cfg, Err: keyvault.AsError(err)}
	}
	// One client per vault the objects name (keyvaultName on an object), all of this identity.
	clients := map[string]keyvault.Client{cfg.VaultName: newMountReads(shared)}
	clientErrs := map[string]error{}
	for _, o := range cfg.Objects {
		v := cfg.Vault(o)
		if clients[v] != nil || clientErrs[v] != nil {
			continue
		}
		if c, err := p.clients.get(ctx, cfg, v, env, p.opts.Auth, p.opts.NewClient); err != nil {
			clientErrs[v] = err
		} else {
			clients[v] = newMountReads(c)
		}
	}

	// The selections are listed first, so that every read of the mount (named objects and
	// matches alike) shares one set of --parallel-fetches workers.
	matches := p.listSelections(ctx, cfg, clients, clientErrs)
	var items []readItem
	for i, o := range cfg.Objects {
		switch m := matches[i]; {
		case !o.Selection():
			items = append(items, readItem{entry: i, o: o})
		case m.err == nil:
			for _, name := range m.names {
				items = append(items, readItem{entry: i, o: o.Match(name)})
			}
		}
	}
	read := p.fetchAll(ctx, len(items), func(i int) objectResult {
		it := items[i]
		vault := cfg.Vault(it.o)
		if err := clientErrs[vault]; err != nil {
			return objectResult{err: err}
		}
		r := p.fetchObject(ctx, clients[vault], vault, it.o)
		if keyvault.KindOf(r.err) == keyvault.KindResourceExhausted {
			stop()
		}
		return r
	})
	results := make([]objectResult, len(cfg.Objects))
	for i := range cfg.Objects {
		results[i].err = matches[i].err
	}
	for i, it := range items {
		results[it.entry] = addRead(results[it.entry], cfg.Objects[it.entry], it.o, read[i])
	}

	var res Result
	var failures []ObjectError
	for _, r := range results {
		if err := keyvault.AsError(r.err); err != nil && err.Kind == keyvault.KindResourceExhausted {
			return Result{}, &MountError{Config: cfg, Err: err} // the other objects were stopped for it
		}
	}
	for i, r := range results {
		if r.err != nil {
			o, err := cfg.Objects[i], keyvault.AsError(r.err)
			if o.Optional && err.Absent() {
				klog.InfoS("optional object is absent, deleted or disabled: not written", "pod", klog.KRef(cfg.Pod.Namespace, cfg.Pod.Name),
					"vault", cfg.Vault(o), "objectType", o.Type, "objectName", o.Name, "objectVersion", versionOrLatest(o.Version), "reason", err.Detail)
				continue
			}
			failures = append(failures, ObjectError{Object: o, Err: err})
			continue
		}
		res.Files = append(res.Files, r.files...)
		res.Versions = append(res.Versions, r.versions...)
	}
	if len(failures) > 0 {
		return Result{}, &MountError{Config: cfg, Objects: failures}
	}
	if err := checkUniquePaths(res.Files); err != nil {
		return Result{}, &MountError{Config: cfg, Err: &keyvault.Error{Kind: keyvault.KindInvalidArgument, Detail: err.Error()}}
	}
	return res, nil
}

// fetchAll runs fetch(i) for every i < n on at most --parallel-fetches goroutines, the caller's
// among them (a mount of one object starts no goroutine), and returns the results in order. A
// goroutine per item would cost a stack per object of every mount waiting its turn (thousands with
// many large mounts at once). An item not started when ctx ends gets ctx's error; a panic fails
// only its item (on a goroutine of its own it would end the process, and every mount in flight).
func (p *Provider) fetchAll(ctx context.Context, n int, fetch func(i int) objectResult) []objectResult {
	results := make([]objectResult, n)
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			if err := ctx.Err(); err != nil {
				results[i] = objectResult{err: keyvault.AsError(err)}
				continue
			}
			results[i] = recoverFetch(i, fetch)
		}
	}
	var wg sync.WaitGroup
	for range min(p.opts.Parallelism, n) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return results
}

func recoverFetch(i int, fetch func(i int) objectResult) (r objectResult) {
	defer func() {
		if v := recover(); v != nil {
			klog.ErrorS(nil, "panic while reading or rendering an object", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			r = objectResult{err: &keyvault.Error{Kind: keyvault.KindInternal, Detail: "internal error in the provider (logged with its stack)"}}
		}
	}()
	return fetch(i)
}

// resolveCloud resolves the mount's cloud within its deadline (an Azure Stack file is read from
// the node's disk).
func resolveCloud(ctx context.Context, cfg config.MountConfig) (cloud.Environment, error) {
	resolve := func() (cloud.Environment, error) {
		env, err := cloud.Resolve(cfg.CloudName, cfg.CloudEnvFile)
		if err != nil {
			return env, &keyvault.Error{Kind: keyvault.KindInvalidArgument, Detail: err.Error(), Err: err}
		}
		return env, nil
	}
	if cfg.CloudName != config.AzureStackCloud { // a built-in cloud: no file to read
		return resolve()
	}
	type result struct {
		env cloud.Environment
		err error
	}
	done := make(chan result, 1)
	go func() {
		env, err := resolve()
		done <- result{env, err}
	}()
	select {
	case r := <-done:
		return r.env, r.err
	case <-ctx.Done():
		return cloud.Environment{}, &keyvault.Error{Kind: keyvault.KindDeadlineExceeded, Err: ctx.Err(),
			Detail: fmt.Sprintf("reading %s %q did not finish before the driver's deadline", config.CloudEnvFileName, cfg.CloudEnvFile)}
	}
}

type objectResult struct {
	files    []File
	versions []ObjectVersion
	err      error
}

// readItem is one object to read: a named entry, or one match of a selection entry.
type readItem struct {
	entry int
	o     config.Object
}

// addRead adds the read of object o (entry itself, or one of its matches) to the result of entry.
// A match that vanished between the list and its read is left out; any other failure of a match
// fails the whole entry, named by the match.
func addRead(to objectResult, entry, o config.Object, r objectResult) objectResult {
	if to.err != nil {
		return to
	}
	if r.err != nil {
		if !entry.Selection() {
			return r
		}
		e := keyvault.AsError(r.err)
		if e.Absent() {
			return to // deleted or disabled since the list: the next mount lists again
		}
		m := *e
		m.Detail = fmt.Sprintf("%s %q: %s", o.Type, o.Name, e.Detail)
		return objectResult{err: &m}
	}
	to.files = append(to.files, r.files...)
	to.versions = append(to.versions, r.versions...)
	return to
}

// fetchObject reads one named object: one version, or the newest History enabled versions.
func (p *Provider) fetchObject(ctx context.Context, client keyvault.Client, vault string, o config.Object) objectResult {
	if o.History == 0 {
		files, version, err := p.fetchVersion(ctx, client, vault, o, o.Version, o.FileName(), true)
		if err == nil {
			err = budgetOf(ctx).chargeFiles(ctx, files)
		}
		if err != nil {
			return objectResult{err: err}
		}
		return objectResult{files: files, versions: perFile(files, o.ID(), version)}
	}

	versions, err := p.historyVersions(ctx, client, o)
	if err != nil {
		return objectResult{err: err}
	}
	var out objectResult
	for i, v := range versions {
		files, version, err := p.fetchVersion(ctx, client, vault, o, v, path.Join(o.FileName(), strconv.Itoa(i)), i == 0)
		if err == nil {
			err = budgetOf(ctx).chargeFiles(ctx, files)
		}
		if err != nil {
			return objectResult{err: err}
		}
		out.files = append(out.files, files...)
		out.versions = append(out.versions, perFile(files, o.ID()+"/"+strconv.Itoa(i), version)...)
	}
	return out
}

// perFile reports one ObjectVersion per file written, as Azure's provider does (a certificate's
// secret with --write-cert-and-key-in-separate-files reports three).
func perFile(files []File, id, version string) []ObjectVersion {
	out := make([]ObjectVersion, len(files))
	for i := range files {
		out[i] = ObjectVersion{ID: id, Version: version}
	}
	return out
}

// historyVersions lists the enabled versions of o, newest first by created time, starting at the
// pinned version if any, at most o.History of them.
func (p *Provider) historyVersions(ctx context.Context, client keyvault.Client, o config.Object) ([]string, error) {
	var list []keyvault.VersionInfo
	var err error
	switch o.Type {
	case config.TypeSecret:
		list, err = client.SecretVersions(ctx, o.Name)
	case config.TypeKey:
		list, err = client.KeyVersions(ctx, o.Name)
	case config.TypeCert:
		list, err = client.CertificateVersions(ctx, o.Name)
	}
	if err != nil {
		return nil, err
	}
	enabled := make([]keyvault.VersionInfo, 0, len(list)) // list may be a shared cached result
	for _, v := range list {
		if v.Enabled {
			enabled = append(enabled, v)
		}
	}
	sort.SliceStable(enabled, func(a, b int) bool { return enabled[a].Created.After(enabled[b].Created) })
	start := 0
	if o.Version != "" {
		start = -1
		for i, v := range enabled {
			if strings.EqualFold(v.Version, o.Version) {
				start = i
				break
			}
		}
		if start < 0 {
			return nil, &keyvault.Error{Kind: keyvault.KindNotFound,
				Detail: fmt.Sprintf("version %s is not among the %d enabled versions; check objectVersion or enable that version", o.Version, len(enabled))}
		}
	}
	if len(enabled) == 0 {
		return nil, &keyvault.Error{Kind: keyvault.KindNotFound, Detail: "the object has no enabled version; enable one or remove objectVersionHistory"}
	}
	enabled = enabled[start:]
	if len(enabled) > o.History {
		enabled = enabled[:o.History]
	}
	out := make([]string, len(enabled))
	for i, v := range enabled {
		out[i] = v.Version
	}
	return out, nil
}

// fetchVersion reads one version of o and renders its file(s) at filePath.
// newest marks the version whose certificate expiry is exported (history files hold older ones too).
func (p *Provider) fetchVersion(ctx context.Context, client keyvault.Client, vault string, o config.Object, version, filePath string, newest bool) ([]File, string, error) {
	if err := budgetOf(ctx).gate(ctx); err != nil {
		return nil, "", err
	}
	klog.V(4).InfoS("reading object", "objectType", o.Type, "objectName", o.Name, "objectVersion", versionOrLatest(version))
	switch o.Type {
	case config.TypeSecret:
		s, err := client.GetSecret(ctx, o.Name, version)
		if err != nil {
			return nil, "", err
		}
		if o.Format == config.FormatMetadata {
			var leaf []byte
			if s.CertificateBacked {
				if leaf, err = secretLeaf(s); err != nil {
					return nil, "", err
				}
			}
			b, err := formatMetadata(o, vault, s.Version, s.ContentType, s.Attributes, leaf)
			return []File{{Path: filePath, Mode: o.Mode, Contents: b}}, s.Version, err
		}
		if o.PFXPasswordSecret != "" {
			b, err := passwordPFX(ctx, client, s, o, p.opts.ConstructPEMChain)
			return []File{{Path: filePath, Mode: o.Mode, Contents: b}}, s.Version, err
		}
		f, err := formatSecret(s, o, p.opts.ConstructPEMChain)
		if err != nil {
			return nil, "", err
		}
		if newest {
			p.recordExpiry(vault, o, f.certPEM)
		}
		files := []File{{Path: filePath, Mode: o.Mode, Contents: f.contents}}
		if p.opts.WriteCertAndKeyInSeparateFiles && f.splitable && o.Format == config.FormatPEM {
			files = append(files,
				File{Path: filePath + ".crt", Mode: o.Mode, Contents: f.certPEM},
				File{Path: filePath + ".key", Mode: o.Mode, Contents: f.keyPEM})
		}
		return files, s.Version, nil
	case config.TypeKey:
		k, err := client.GetKey(ctx, o.Name, version)
		if err != nil {
			return nil, "", err
		}
		if o.Format == config.FormatMetadata {
			b, err := formatMetadata(o, vault, k.Version, "", k.Attributes, nil)
			return []File{{Path: filePath, Mode: o.Mode, Contents: b}}, k.Version, err
		}
		b, err := formatKey(k)
		if err != nil {
			return nil, "", err
		}
		return []File{{Path: filePath, Mode: o.Mode, Contents: b}}, k.Version, nil
	case config.TypeCert:
		c, err := client.GetCertificate(ctx, o.Name, version)
		if err != nil {
			return nil, "", err
		}
		if o.Format == config.FormatMetadata {
			b, err := formatMetadata(o, vault, c.Version, c.ContentType, c.Attributes, c.DER)
			return []File{{Path: filePath, Mode: o.Mode, Contents: b}}, c.Version, err
		}
		b, err := formatCert(c)
		if err != nil {
			return nil, "", err
		}
		if newest {
			p.recordExpiry(vault, o, b)
		}
		return []File{{Path: filePath, Mode: o.Mode, Contents: b}}, c.Version, nil
	}
	return nil, "", fmt.Errorf("unknown object type %q", o.Type)
}

// recordExpiry exports the notAfter of the first certificate of certPEM (the leaf), so operators
// can alert before a mounted certificate expires.
func (p *Provider) recordExpiry(vault string, o config.Object, certPEM []byte) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return
	}
	if c, err := x509.ParseCertificate(block.Bytes); err == nil {
		p.opts.Metrics.SetCertificateExpiry(vault, o.Name, c.NotAfter)
	}
}

func versionOrLatest(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}

// checkUniquePaths catches collisions that only show after fetching (the optional .crt/.key
// files, the matches of a selection): two files at one path, or a file where another needs a
// directory. It also bounds the files of one mount.
func checkUniquePaths(files []File) error {
	if len(files) > config.MaxFiles {
		return fmt.Errorf("the mount would write %d files, more than the %d allowed: select fewer objects", len(files), config.MaxFiles)
	}
	seen := make(map[string]bool, len(files))
	var errs []error
	for _, f := range files {
		if seen[f.Path] {
			errs = append(errs, fmt.Errorf("two objects would write %q: set a distinct objectAlias", f.Path))
		}
		seen[f.Path] = true
	}
	for _, f := range files {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				errs = append(errs, fmt.Errorf("%q is written as a file, but %q needs it to be a directory: set a distinct objectAlias", dir, f.Path))
			}
		}
	}
	return errors.Join(errs...)
}
