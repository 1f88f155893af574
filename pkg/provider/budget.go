package provider

import (
	"context"
	"fmt"
	"sync"

	"github.com/akv-csi/provider/pkg/config"
	"github.com/akv-csi/provider/pkg/keyvault"
)

// Bounds on the mounts in flight. Every mount is counted while it reads and renders, so that no
// SecretProviderClass, and no vault content, can make the provider hold more than these bounds
// add up to (README, "Memory").
const (
	// DefaultMaxConcurrentMounts is the default of --max-concurrent-mounts: mounts served at once;
	// the others wait for a turn within their deadline. A mount holds its turn until its response
	// is written (the gRPC server's bound on calls in flight), so the bound covers encoded
	// responses too: 16 mounts of up to 4 MiB fit the chart's memory limit with everything else
	// (README, "Memory"), and 16 mounts reading 16 objects each keep 256 reads in flight, the
	// most connections the provider opens to one vault.
	DefaultMaxConcurrentMounts = 16
	// DefaultMaxMountBytes is the default of the bytes one mount may read from Key Vault and,
	// separately, the bytes of the files it may write: the driver's default gRPC message limit
	// (--max-response-bytes sets both).
	DefaultMaxMountBytes = 4 << 20
	// largeMountBytes is where a mount becomes large: past it (bytes read plus bytes written) it
	// needs one of maxLargeMounts turns to go on, so only that many mounts hold more than this at
	// once. An ordinary mount (tens of secrets of a few KB) never gets near it.
	largeMountBytes = 256 << 10
	maxLargeMounts  = 2
)

// mountBudget counts what one mount holds: files, bytes read and bytes written. The reads and
// renders of a mount charge it as they go, so a bound is met when it is passed, not after the
// work. Past largeMountBytes the mount starts no further read until it has one of the provider's
// few large-mount turns (gate). Charging never waits: a read may be shared with other mounts
// (joined in flight), and one that waited for a turn held by a mount waiting for that read would
// wait forever.
type mountBudget struct {
	maxFiles            int
	maxRead, maxWritten int64
	large               chan struct{} // the provider's large-mount turns

	mu            sync.Mutex // guards the counts; never held while waiting
	files         int
	read, written int64
	turn          sync.Mutex // held by the gate that waits for a large-mount turn
	holdsLarge    bool       // guarded by turn
}

func (p *Provider) newBudget() *mountBudget {
	return &mountBudget{maxFiles: config.MaxFiles, maxRead: int64(p.opts.MaxMountBytes), maxWritten: int64(p.opts.MaxMountBytes), large: p.large}
}

type budgetKey struct{}

func withBudget(ctx context.Context, b *mountBudget) context.Context {
	return context.WithValue(ctx, budgetKey{}, b)
}

// budgetOf is the budget of the mount ctx belongs to (nil outside a mount: nothing is counted).
func budgetOf(ctx context.Context) *mountBudget {
	b, _ := ctx.Value(budgetKey{}).(*mountBudget)
	return b
}

// chargeRead counts n bytes read from Key Vault (a negative n hands back bytes no longer held:
// a list page once filtered).
func (b *mountBudget) chargeRead(_ context.Context, n int64) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read += n; b.read > b.maxRead {
		return exhausted("the mount read more than %d bytes from Key Vault (--max-response-bytes): mount fewer or smaller objects, or split the SecretProviderClass", b.maxRead)
	}
	return nil
}

// chargeFiles counts the files of one rendered object.
func (b *mountBudget) chargeFiles(_ context.Context, files []File) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files += len(files)
	for _, f := range files {
		b.written += int64(len(f.Path) + len(f.Contents))
	}
	switch {
	case b.files > b.maxFiles:
		return exhausted("the mount would write more than the %d files allowed: select fewer objects (objectVersionHistory counts each version, a selection each match)", b.maxFiles)
	case b.written > b.maxWritten:
		return exhausted("the mount's files add up to more than %d bytes, more than the driver accepts (--max-response-bytes, the driver's --max-call-recv-msg-size): "+
			"mount fewer or smaller objects (objectVersionHistory counts each version), or raise both limits together", b.maxWritten)
	}
	return nil
}

// gate is passed before each read of the mount: once the mount holds more than largeMountBytes,
// it waits for a large-mount turn (the mount's other reads wait at the gate with it; reads already
// started go on, and charge the counts, which no waiting gate holds).
func (b *mountBudget) gate(ctx context.Context) error {
	if b == nil {
		return nil
	}
	b.turn.Lock()
	defer b.turn.Unlock()
	b.mu.Lock()
	held := b.read + b.written
	b.mu.Unlock()
	if b.holdsLarge || held <= largeMountBytes {
		return nil
	}
	select {
	case b.large <- struct{}{}:
		b.holdsLarge = true
		return nil
	case <-ctx.Done():
		return &keyvault.Error{Kind: keyvault.KindUnavailable, Code: codeProviderLimit, Err: ctx.Err(), Detail: fmt.Sprintf(
			"the mount holds more than %d KiB and waited for one of the provider's %d turns for large mounts until the driver's deadline; the driver will retry",
			largeMountBytes>>10, cap(b.large))}
	}
}

// release gives back the mount's large-mount turn.
func (b *mountBudget) release() {
	b.turn.Lock()
	defer b.turn.Unlock()
	if b.holdsLarge {
		<-b.large
		b.holdsLarge = false
	}
}

func exhausted(format string, args ...any) *keyvault.Error {
	return &keyvault.Error{Kind: keyvault.KindResourceExhausted, Detail: fmt.Sprintf(format, args...)}
}

// worstCaseFiles is the most files cfg can write before anything is read: an object writes
// max(1, objectVersionHistory) files, a selection as many as it may match. (A certificate's
// secret with --write-cert-and-key-in-separate-files writes two more, counted as they are
// rendered.)
func worstCaseFiles(cfg config.MountConfig, maxSelected int) int {
	n := 0
	for _, o := range cfg.Objects {
		if o.Selection() {
			n += maxSelected
		} else {
			n += max(1, o.History)
		}
	}
	return n
}

// takeTurn waits for one of the provider's turns to serve a mount, within ctx.
func (p *Provider) takeTurn(ctx context.Context) (release func(), err error) {
	select {
	case p.turns <- struct{}{}:
		return func() { <-p.turns }, nil
	case <-ctx.Done():
		return nil, &keyvault.Error{Kind: keyvault.KindUnavailable, Code: codeProviderLimit, Err: ctx.Err(), Detail: fmt.Sprintf(
			"the provider is serving %d mounts at once (--max-concurrent-mounts) and this one waited for its turn until the driver's deadline; the driver will retry",
			cap(p.turns))}
	}
}
