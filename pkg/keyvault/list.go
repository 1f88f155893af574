package keyvault

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Selector picks objects of a collection list: name prefix and tags (each tag present with an
// equal value). The zero Selector picks every object.
type Selector struct {
	NamePrefix string
	Tags       map[string]string
}

// matches reports whether an object named name with tags is picked by s. Names and values are
// compared exactly.
func (s Selector) matches(name string, tags map[string]string) bool {
	if !strings.HasPrefix(name, s.NamePrefix) {
		return false
	}
	for k, v := range s.Tags {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ListQuery is what a collection list keeps: the current objects (enabled, within nbf/exp at the
// time of listing) that match at least one selector. MaxPerSelector bounds the matches of each
// selector (0: no bound but MaxListItems).
type ListQuery struct {
	Selectors      []Selector
	MaxPerSelector int
}

// Key is the canonical text of q, for sharing a listing between callers with the same query:
// two queries have the same key exactly when they keep the same matches with the same indexes.
func (q ListQuery) Key() string {
	var b strings.Builder
	b.WriteString("max=" + strconv.Itoa(q.MaxPerSelector))
	for _, s := range q.Selectors {
		b.WriteString(";prefix=" + strconv.Quote(s.NamePrefix))
		keys := make([]string, 0, len(s.Tags))
		for k := range s.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(",tag=" + strconv.Quote(k) + "=" + strconv.Quote(s.Tags[k]))
		}
	}
	return b.String()
}

// Match is one object a listing kept, and the indexes of the selectors that matched it.
type Match struct {
	Name      string
	Selectors []int
}

// TooManyMatchesError says that selector Selector of a query matched more than Max objects. A
// listing fails with an *Error (KindInvalidArgument) that wraps it as soon as that happens.
type TooManyMatchesError struct {
	Selector int
	Max      int
}

func (e *TooManyMatchesError) Error() string {
	return fmt.Sprintf("selector %d matches more than %d objects", e.Selector, e.Max)
}

// Current reports whether an object version with these attributes may be selected at now:
// enabled (an absent "enabled" means enabled, as Azure's provider reads it), and within its
// validity window (nbf <= now < exp; Key Vault does not enforce them on reads).
func (a Attributes) Current(now time.Time) bool {
	return (a.Enabled == nil || *a.Enabled) &&
		(a.NotBefore == nil || !now.Before(*a.NotBefore)) &&
		(a.Expires == nil || now.Before(*a.Expires))
}

// matcher applies a query to the items of a listing as they come, keeping only the matches.
type matcher struct {
	q      ListQuery
	now    time.Time
	counts []int
	seen   map[string]bool
	out    []Match
}

func newMatcher(q ListQuery, now time.Time) *matcher {
	return &matcher{q: q, now: now, counts: make([]int, len(q.Selectors)), seen: map[string]bool{}}
}

// add takes one listed object. A name listed twice is kept once (a hostile list cannot make the
// caller read or write an object twice).
func (m *matcher) add(name string, a Attributes) error {
	if name == "" || m.seen[name] || !a.Current(m.now) {
		return nil
	}
	var sel []int
	for i, s := range m.q.Selectors {
		if !s.matches(name, a.Tags) {
			continue
		}
		sel = append(sel, i)
		m.counts[i]++
		if m.q.MaxPerSelector > 0 && m.counts[i] > m.q.MaxPerSelector {
			return &Error{Kind: KindInvalidArgument, Err: &TooManyMatchesError{Selector: i, Max: m.q.MaxPerSelector},
				Detail: fmt.Sprintf("selector %d of the list matches more than %d objects", i, m.q.MaxPerSelector)}
		}
	}
	if len(sel) > 0 {
		m.seen[name] = true
		m.out = append(m.out, Match{Name: name, Selectors: sel})
	}
	return nil
}

// Filter applies q to a whole list at once, as ListSecrets and ListCertificates do page by page,
// with now as the time of listing: for fakes of Client.
func (q ListQuery) Filter(items []ObjectInfo, now time.Time) ([]Match, error) {
	m := newMatcher(q, now)
	for _, it := range items {
		if err := m.add(it.Name, it.Attributes); err != nil {
			return nil, err
		}
	}
	return m.out, nil
}

// pacerKey carries the caller's pacer through the Client interface.
type pacerKey struct{}

// WithPacer makes every list under ctx call pace before each page after the first (the caller
// paces the first, as it does any other read): a listing of many pages then takes its turns at
// the caller's rate limit like as many reads. An error from pace ends the listing with it.
func WithPacer(ctx context.Context, pace func(context.Context) error) context.Context {
	return context.WithValue(ctx, pacerKey{}, pace)
}

func pacer(ctx context.Context) func(context.Context) error {
	p, _ := ctx.Value(pacerKey{}).(func(context.Context) error)
	return p
}
