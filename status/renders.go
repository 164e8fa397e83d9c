package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
)

// Bounds of what a Renders keeps per template.
const (
	// MaxDiffFile is the largest destination whose versions are kept to
	// diff; a larger one gets no diff (DiffNote says so).
	MaxDiffFile = 4 << 20
	// MaxDiff bounds a diff as shown; the rest is cut.
	MaxDiff = 64 << 10
	// MaxOutput bounds a command's output as shown (its tail is kept).
	MaxOutput = 4 << 10
)

// observations buffers the attempts Observe hands to Run; when it is full
// an attempt is dropped (the next one of the template replaces it anyway).
const observations = 256

// Renders keeps what the daemon saw of each template's render attempts
// (runner observations): outcome, phases, the last check and reload, and
// the diff of the last change, which it works out itself by keeping the
// version of each destination it saw last. Observe never blocks; Run does
// the reading and diffing. It is safe for concurrent use.
type Renders struct {
	in chan runner.Observation

	mu    sync.Mutex
	specs map[string]render.Spec // template → its spec, from Track
	seen  map[string][]byte      // dest → the content last seen; nil: too large or unreadable
	last  map[string]Render      // template → what it last did
	// notify receives a value (coalesced) after each change of last.
	notify chan struct{}
}

// NewRenders returns an empty Renders.
func NewRenders() *Renders {
	return &Renders{in: make(chan runner.Observation, observations), specs: map[string]render.Spec{},
		seen: map[string][]byte{}, last: map[string]Render{}, notify: make(chan struct{}, 1)}
}

// Track sets the templates being rendered (at start and after a reload)
// and reads each destination not seen yet, so that the first change has
// a version to diff against. Call it before the runner renders them.
func (r *Renders) Track(templates []config.Template) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.specs)
	for _, t := range templates {
		r.specs[t.Name] = t.Spec
		if _, ok := r.seen[t.Spec.Dest]; !ok && t.Spec.Dest != "" {
			r.seen[t.Spec.Dest] = readBounded(t.Spec.Dest)
		}
	}
}

// Observe records one render attempt (a runner observer: it never blocks).
func (r *Renders) Observe(o runner.Observation) {
	select {
	case r.in <- o:
	default:
	}
}

// Changed receives a value after a template's attempt was recorded
// (coalesced).
func (r *Renders) Changed() <-chan struct{} { return r.notify }

// Snapshot returns what each template last did, by name.
func (r *Renders) Snapshot() map[string]Render {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Render, len(r.last))
	for k, v := range r.last {
		out[k] = v
	}
	return out
}

// Run records the attempts Observe was given until ctx ends.
func (r *Renders) Run(ctx context.Context) {
	for {
		select {
		case o := <-r.in:
			r.record(o, time.Now())
			select {
			case r.notify <- struct{}{}:
			default:
			}
		case <-ctx.Done():
			return
		}
	}
}

// record folds one attempt into the template's Render.
func (r *Renders) record(o runner.Observation, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spec := r.specs[o.Template]
	prev := r.last[o.Template]
	rr := Render{At: now, Revision: o.Revision, Outcome: Outcome(o.Result), Check: prev.Check, Reload: prev.Reload,
		Diff: prev.Diff, DiffNote: prev.DiffNote, ChangedAt: prev.ChangedAt,
		Phases: Phases{Cycle: o.Took, Commands: o.Result.Cost, GenerationWait: o.Result.GenerationWait, Paced: o.Paced, QuarantineRuns: o.Checks}}
	if o.Result.Err != nil {
		rr.Error = o.Result.Err.Error()
	}
	// Which commands ran, and how they ended: a failed one is in the
	// error; a change that applied passed its check; a reload that ran
	// says so.
	var ce *render.CommandError
	failed := errors.As(o.Result.Err, &ce)
	if failed {
		c := &Command{At: now, Line: ce.Line, Error: ce.Err.Error(), Output: tail(ce.Output, MaxOutput)}
		if ce.What == "reload" {
			rr.Reload = c
		} else if ce.What == "check" {
			rr.Check = c
		}
	}
	if spec.Check != "" && (o.Result.Changed || o.Result.Reloaded || failed && ce.What == "reload") {
		rr.Check = &Command{At: now, Line: spec.Check, OK: true}
	}
	if o.Result.Reloaded {
		rr.Reload = &Command{At: now, Line: spec.Reload, OK: true}
	}
	if o.Result.Changed && o.Result.Dest != "" {
		rr.ChangedAt = now
		rr.Diff, rr.DiffNote = r.diff(o.Result.Dest)
	}
	r.last[o.Template] = rr
}

// diff reads dest and diffs it against the version seen before, which it
// then replaces. Called with mu held.
func (r *Renders) diff(dest string) (diff, note string) {
	old, had := r.seen[dest]
	cur := readBounded(dest)
	r.seen[dest] = cur
	switch {
	case cur == nil:
		return "", fmt.Sprintf("%s is unreadable or larger than %d bytes", dest, MaxDiffFile)
	case !had:
		return "", "no earlier version of " + dest + " was seen by this daemon"
	case old == nil:
		return "", "the earlier version of " + dest + " was unreadable or too large"
	}
	d := render.Diff(dest+" (before)", dest, old, cur)
	if d == "" {
		return "", "content unchanged (mode or owner changed)"
	}
	if len(d) > MaxDiff {
		d = d[:MaxDiff] + fmt.Sprintf("\n[diff cut at %d bytes]\n", MaxDiff)
	}
	return d, ""
}

// readBounded reads a file of at most MaxDiffFile bytes (nil otherwise; an
// absent file is empty).
func readBounded(path string) []byte {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return []byte{}
	}
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxDiffFile+1))
	if err != nil || len(b) > MaxDiffFile {
		return nil
	}
	return b
}

// tail keeps the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
