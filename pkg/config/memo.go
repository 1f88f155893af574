package config

import (
	"container/list"
	"io/fs"
	"slices"
	"sync"
)

// Memo remembers the objects parsed from recent objects parameters, so that a SecretProviderClass
// mounted again (every rotation poll, every replica of a workload) is not decoded again: the
// objects YAML, one document per entry, was the largest share of the provider's CPU and
// allocations per warm mount after Key Vault's own requests. Parsing is a pure function of the
// parameter's text and the driver's default file mode, so a remembered result is exactly what
// parsing again would return. Only valid objects parameters are remembered; the memo holds no
// identity, token or secret. Safe for concurrent use.
type Memo struct {
	mu    sync.Mutex
	max   int // bytes of parameter text remembered, at most
	bytes int
	order *list.List // of *memoEntry, most recently used first
	byKey map[memoKey]*list.Element
}

type memoKey struct {
	objects string
	mode    fs.FileMode
}

type memoEntry struct {
	key      memoKey
	objects  []Object
	warnings []string
}

// DefaultMemoBytes bounds a Memo: the text of a few thousand typical objects parameters.
const DefaultMemoBytes = 4 << 20

// NewMemo returns a Memo remembering at most maxBytes of objects parameter text (DefaultMemoBytes
// if maxBytes <= 0), the least recently used dropped first.
func NewMemo(maxBytes int) *Memo {
	if maxBytes <= 0 {
		maxBytes = DefaultMemoBytes
	}
	return &Memo{max: maxBytes, order: list.New(), byKey: map[memoKey]*list.Element{}}
}

// Parse is Parse, with the objects parameter decoded at most once while it is remembered.
func (m *Memo) Parse(attributes, secrets, permission string, d Defaults) (MountConfig, error) {
	return parse(attributes, secrets, permission, d, m)
}

// objects parses an objects parameter, or returns a copy of what parsing it returned before. A nil
// Memo parses every time.
func (m *Memo) objects(raw string, defaultMode fs.FileMode) ([]Object, []string, []error) {
	if m == nil {
		return parseObjects(raw, defaultMode)
	}
	key := memoKey{objects: raw, mode: defaultMode}
	m.mu.Lock()
	if e, ok := m.byKey[key]; ok {
		m.order.MoveToFront(e)
		kept := e.Value.(*memoEntry)
		objects, warnings := slices.Clone(kept.objects), slices.Clone(kept.warnings)
		m.mu.Unlock()
		return objects, warnings, nil
	}
	m.mu.Unlock()

	objects, warnings, errs := parseObjects(raw, defaultMode)
	if len(errs) > 0 || len(raw) > m.max {
		return objects, warnings, errs
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byKey[key]; ok { // parsed at the same time by another mount
		return objects, warnings, nil
	}
	m.byKey[key] = m.order.PushFront(&memoEntry{key: key, objects: slices.Clone(objects), warnings: slices.Clone(warnings)})
	m.bytes += len(raw)
	for m.bytes > m.max {
		oldest := m.order.Back()
		e := oldest.Value.(*memoEntry)
		m.order.Remove(oldest)
		delete(m.byKey, e.key)
		m.bytes -= len(e.key.objects)
	}
	return objects, warnings, nil
}
