package provider

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// DefaultMaxSelectedObjects is the default of --max-selected-objects: the most objects one
// selection (objectNamePrefix, objectTags) may match.
const DefaultMaxSelectedObjects = 100

// fetchSelection lists the vault's secrets or certificates (every page), keeps the enabled,
// current ones that o matches, and reads each as if it were named in its own entry. A match that
// vanished between the list and its read is left out; any other failure fails the selection.
func (p *Provider) fetchSelection(ctx context.Context, cfg config.MountConfig, client keyvault.Client, vault string, o config.Object) objectResult {
	var list []keyvault.ObjectInfo
	var err error
	if o.Type == config.TypeCert {
		list, err = client.ListCertificates(ctx)
	} else {
		list, err = client.ListSecrets(ctx)
	}
	if err != nil {
		return objectResult{err: err}
	}
	now := time.Now()
	var names []string
	for _, info := range list {
		if !config.ValidObjectName(info.Name) { // it becomes a file name
			return objectResult{err: &keyvault.Error{Kind: keyvault.KindInternal,
				Detail: fmt.Sprintf("Key Vault listed an object named %q, which is not a Key Vault object name", truncateName(info.Name))}}
		}
		if o.Matches(info.Name, info.Attributes.Tags) && current(info.Attributes, now) {
			names = append(names, info.Name)
		}
	}
	sort.Strings(names)
	if len(names) > p.opts.MaxSelectedObjects {
		return objectResult{err: &keyvault.Error{Kind: keyvault.KindInvalidArgument, Detail: fmt.Sprintf(
			"the selection matches %d objects, more than the %d allowed (--max-selected-objects): narrow objectNamePrefix or objectTags, "+
				"split the entry, or raise --max-selected-objects", len(names), p.opts.MaxSelectedObjects)}}
	}
	klog.V(4).InfoS("selection listed", "vault", vault, "objectType", o.Type, "selector", o.Describe(), "listed", len(list), "matched", len(names))

	results := make([]objectResult, len(names))
	sem := make(chan struct{}, p.opts.Parallelism)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				results[i] = p.fetchObject(ctx, cfg, client, vault, o.Match(name))
			case <-ctx.Done():
				results[i] = objectResult{err: keyvault.AsError(ctx.Err())}
			}
		}()
	}
	wg.Wait()
	var out objectResult
	for i, r := range results {
		if r.err != nil {
			e := keyvault.AsError(r.err)
			if e.Absent() {
				continue // deleted or disabled since the list: the next mount lists again
			}
			m := *e
			m.Detail = fmt.Sprintf("%s %q: %s", o.Type, names[i], e.Detail)
			return objectResult{err: &m}
		}
		out.files = append(out.files, r.files...)
		out.versions = append(out.versions, r.versions...)
	}
	return out
}

// current reports whether a listed object may be selected: enabled, and within its validity
// window (nbf and exp, which Key Vault does not enforce on reads).
func current(a keyvault.Attributes, now time.Time) bool {
	return (a.Enabled == nil || *a.Enabled) && (a.NotBefore == nil || !now.Before(*a.NotBefore)) && (a.Expires == nil || now.Before(*a.Expires))
}

func truncateName(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
