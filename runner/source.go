package runner

import (
	"context"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/watcher"
)

// Source is data templates render from, kept current by its own Run, as a
// Prometheus discoverer is: a store prefix's watcher.Mirror (the default),
// or a Docker Engine's containers (dockergen.Source). One source is shared
// by every template that names its key.
//
// Contract:
//   - Run keeps the source current until ctx ends and returns only then;
//     the runner runs it in a goroutine it waits for. Run retries its own
//     failures (with backoff) and reports them in Health.
//   - Synced is closed once the first full listing is in.
//   - Subscribe's channel receives a value (coalesced: it never blocks the
//     source) after changes; cancel stops them. A notification is a hint:
//     the runner reads Snapshot and compares generations, so a source may
//     notify for an event that changed nothing.
//   - Snapshot is the content at one moment. Two snapshots with equal
//     Generation have equal content, as the templates see it: a source
//     bumps Generation only when that content changed. Its slices are
//     shared and must not be modified.
//   - Health says how the source is doing; Health().Prefix names it.
type Source interface {
	Run(ctx context.Context)
	Synced() <-chan struct{}
	Subscribe() (notify <-chan struct{}, cancel func())
	Snapshot() watcher.Snapshot
	Health() watcher.Health
}

// WithSources sets where templates' data comes from: keys names the
// sources a template reads, and open makes the source of a key (called
// once per key in use; the runner runs it). The default reads each of a
// template's Prefixes from a watcher.Mirror of the runner's store; open
// may return nil for a key it leaves to that default.
//
// A source whose snapshots carry a Catalog (package catalog) learns a
// template's dependencies as the template executes: an execution that
// looked up data the source has no answer for yet ends in
// dialect.ErrPending, and the runner holds that render (no output, no
// retry, no quarantine) until the source notifies the answer.
func WithSources(keys func(config.Template) []string, open func(key string) Source) Option {
	return func(r *Runner) { r.keys, r.open = keys, open }
}

// Triggers say what renders a template besides its first render and a
// regeneration: a change of its data, unless IgnoreData, and, with Every,
// a tick every Every (docker-gen's interval), which renders even when
// nothing changed and is reported to the WithApplied hook as a Tick.
type Triggers struct {
	IgnoreData bool
	Every      time.Duration
}

// WithTriggers sets each template's Triggers (default: data changes only).
func WithTriggers(f func(config.Template) Triggers) Option {
	return func(r *Runner) { r.triggers = f }
}

// Applied is one successful render of one template, as reported to the
// WithApplied hook.
type Applied struct {
	Template config.Template
	Result   render.Result // Changed says whether the destination was replaced
	Tick     bool          // the render was an interval tick (Triggers.Every)
}

// WithApplied calls f after every successful render (Once's too), from
// Run's goroutine, with Run's context: docker-gen's container
// notifications. f may block for the I/O it does; Run waits for it.
func WithApplied(f func(context.Context, Applied)) Option {
	return func(r *Runner) { r.applied = f }
}

// WithRegenerate makes every value received on ch re-read every template
// (one that no longer parses keeps its previous version) and render all
// of them at once, without a quiet window: docker-gen's SIGHUP.
func WithRegenerate(ch <-chan struct{}) Option { return func(r *Runner) { r.regenerate = ch } }

// sourceKeys are the keys of the sources t reads.
func (r *Runner) sourceKeys(t config.Template) []string {
	if r.keys != nil {
		return r.withCertKey(r.keys(t))
	}
	return r.withCertKey(t.Prefixes)
}

// openSource makes the source of key.
func (r *Runner) openSource(key string) Source {
	if src, ok := r.certSource(key); ok {
		return src
	}
	if r.open != nil {
		if src := r.open(key); src != nil {
			return src
		}
	}
	return watcher.NewMirror(r.st, key, append([]watcher.MirrorOption{watcher.WithLogger(r.log)}, r.mirrorO...)...)
}

func (r *Runner) triggersOf(t config.Template) Triggers {
	if r.triggers != nil {
		return r.triggers(t)
	}
	return Triggers{}
}

// generations are the identity of the data of the sources keys name.
func generations(keys []string, sources map[string]Source) []uint64 {
	gens := make([]uint64, 0, len(keys))
	for _, k := range keys {
		gens = append(gens, sources[k].Snapshot().Generation)
	}
	return gens
}

// Binder is implemented by a Source that decides how the templates
// reading it make their output (package dedup: one daemon executes the
// template, the others write what it stored). The runner uses Bind
// instead of render.Bind for every render of a template that reads one
// Binder (besides, at most, the certificate store WithCerts adds to every
// template), and tells Applied of each of its successful renders. Both are
// called from Run's goroutine and must not block.
type Binder interface {
	Bind(t *dialect.Template, in dialect.Input) render.Source
	Applied(t config.Template, res render.Result)
}

// binderOf is the Binder of a template whose keys name exactly one source
// that is one, and no other source but the certificate store's.
func (r *Runner) binderOf(keys []string, sources map[string]Source) Binder {
	var b Binder
	for _, k := range keys {
		if r.certs != nil && k == watcher.CertKey(r.certs.Dir()) {
			continue
		}
		kb, ok := sources[k].(Binder)
		if !ok || b != nil {
			return nil
		}
		b = kb
	}
	return b
}

// bind is what renders a template's output from in.
func bind(b Binder, t *dialect.Template, in dialect.Input) render.Source {
	if b != nil {
		return b.Bind(t, in)
	}
	return render.Bind(t, in)
}
