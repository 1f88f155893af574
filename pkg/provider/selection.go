package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"k8s.io/klog/v2"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// DefaultMaxSelectedObjects is the default of --max-selected-objects: the most objects one
// selection (objectNamePrefix, objectTags) may match.
const DefaultMaxSelectedObjects = 100

// selected is what a selection entry matched: the names to read, in order, or why it failed.
type selected struct {
	names []string
	err   error
}

// listSelections lists what each selection entry of cfg matches (entries that are not
// selections get a zero value).
//
// One listing serves every selection of the mount over a vault and type: the query holds the
// selectors of all of them (selectionQuery), so each entry asks the same query and the mount's
// reads (mountReads) list once, whatever the number of entries. The listing keeps only names.
func (p *Provider) listSelections(ctx context.Context, cfg config.MountConfig, clients map[string]keyvault.Client, clientErrs map[string]error) []selected {
	out := make([]selected, len(cfg.Objects))
	var entries []int
	for i, o := range cfg.Objects {
		if o.Selection() {
			entries = append(entries, i)
		}
	}
	listed := p.fetchAll(ctx, len(entries), func(j int) objectResult {
		o := cfg.Objects[entries[j]]
		vault := cfg.Vault(o)
		if err := clientErrs[vault]; err != nil {
			return objectResult{err: err}
		}
		names, err := p.listSelection(ctx, cfg, clients[vault], vault, o)
		out[entries[j]] = selected{names: names, err: err}
		return objectResult{err: err}
	})
	for j, r := range listed {
		if r.err != nil { // a panic or a cancelled mount, as well as the listing's own error
			out[entries[j]].err = r.err
		}
	}
	return out
}

// listSelection lists the vault's secrets or certificates and returns the names of the current
// objects that o matches, sorted.
func (p *Provider) listSelection(ctx context.Context, cfg config.MountConfig, client keyvault.Client, vault string, o config.Object) ([]string, error) {
	q, entries, own := selectionQuery(cfg, vault, o, p.opts.MaxSelectedObjects)
	var matches []keyvault.Match
	var err error
	if o.Type == config.TypeCert {
		matches, err = client.ListCertificates(ctx, q)
	} else {
		matches, err = client.ListSecrets(ctx, q)
	}
	if err != nil {
		return nil, selectionError(err, entries, own)
	}
	var names []string
	for _, m := range matches {
		for _, i := range m.Selectors {
			if i != own {
				continue
			}
			if !config.ValidObjectName(m.Name) { // it becomes a file name
				return nil, &keyvault.Error{Kind: keyvault.KindInternal,
					Detail: fmt.Sprintf("Key Vault listed an object named %q, which is not a Key Vault object name", truncateName(m.Name))}
			}
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	names = slices.Compact(names) // a client other than keyvault's might list a name twice
	if len(names) > p.opts.MaxSelectedObjects {
		return nil, tooManyMatches(fmt.Sprintf("%d objects, more than the %d allowed", len(names), p.opts.MaxSelectedObjects))
	}
	klog.V(4).InfoS("selection listed", "vault", vault, "objectType", o.Type, "selector", o.Describe(), "selectors", len(q.Selectors), "matched", len(names))
	return names, nil
}

// selectionQuery is the one query of the mount's selections over vault and o's type: the
// selectors of its selection entries in entry order, each distinct selector once. entries[i] is
// the first entry of selector i, and own is o's selector. o is added when cfg does not hold it
// (a caller outside Mount).
func selectionQuery(cfg config.MountConfig, vault string, o config.Object, maxPerSelector int) (q keyvault.ListQuery, entries []config.Object, own int) {
	q.MaxPerSelector = maxPerSelector
	index := func(e config.Object) int {
		for i, s := range q.Selectors {
			if s.NamePrefix == e.NamePrefix && maps.Equal(s.Tags, e.Tags) {
				return i
			}
		}
		q.Selectors = append(q.Selectors, keyvault.Selector{NamePrefix: e.NamePrefix, Tags: e.Tags})
		entries = append(entries, e)
		return len(q.Selectors) - 1
	}
	for _, e := range cfg.Objects {
		if e.Selection() && cfg.Vault(e) == vault && listsCertificates(e) == listsCertificates(o) {
			index(e)
		}
	}
	return q, entries, index(o)
}

// listsCertificates reports whether a selection lists the vault's certificates (else its secrets).
func listsCertificates(o config.Object) bool { return o.Type == config.TypeCert }

// selectionError names the entry whose selector stopped the listing, when one did.
func selectionError(err error, entries []config.Object, own int) error {
	var tm *keyvault.TooManyMatchesError
	if !errors.As(err, &tm) || tm.Selector < 0 || tm.Selector >= len(entries) {
		return err
	}
	if tm.Selector == own {
		return tooManyMatches(fmt.Sprintf("more than the %d objects allowed", tm.Max))
	}
	return &keyvault.Error{Kind: keyvault.KindInvalidArgument, Err: err, Detail: fmt.Sprintf(
		"the vault's list, shared by every selection of the mount, stopped: another entry (%s) matches more than the %d objects allowed (--max-selected-objects): "+
			"narrow its objectNamePrefix or objectTags, split it, or raise --max-selected-objects", entries[tm.Selector].Describe(), tm.Max)}
}

func tooManyMatches(what string) *keyvault.Error {
	return &keyvault.Error{Kind: keyvault.KindInvalidArgument, Detail: "the selection matches " + what +
		" (--max-selected-objects): narrow objectNamePrefix or objectTags, split the entry, or raise --max-selected-objects"}
}

func truncateName(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
