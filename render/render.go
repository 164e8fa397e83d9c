package render

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// ErrRefused marks a render that a guard (min_entries, max_shrink) refused:
// the last good file stays in place. Test with errors.Is.
var ErrRefused = errors.New("render refused")

// Spec says where and how one template's output is written. The zero value
// of every optional field means "not set".
type Spec struct {
	Name    string      // for logs and errors; Dest when empty
	Dest    string      // the destination file; a symbolic link is followed (the link stays)
	Mode    os.FileMode // 0: keep the destination's mode (0644 for a new file)
	UID     *int        // nil: keep the destination's owner (a new file: the process's)
	GID     *int        // nil: keep the destination's group
	Backup  bool        // keep the previous file as Dest + ".bak"
	Check   string      // shell command run on the staged file before the swap; {{.src}} is its path
	Reload  string      // shell command run after the swap; {{.src}} is Dest
	Timeout time.Duration

	// MinEntries refuses to render when the template counts fewer records.
	MinEntries int
	// MaxShrink refuses to render when the record count drops by more than
	// this fraction (0 < MaxShrink < 1) from the last good render. 0: off.
	MaxShrink float64
}

func (s Spec) name() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Dest
}

// Source produces one template's output from one snapshot: Render executes
// the template, Count is the number of records the render guards count.
type Source interface {
	Render(w io.Writer) error
	Count() int
}

// Job is one template resource to bring up to date.
type Job struct {
	Spec   Spec
	Source Source
	Force  bool // bypass MaxShrink (MinEntries still holds)
}

// Result is what one job of a cycle did.
type Result struct {
	Name     string
	Dest     string // the file written: a symbolic link's target
	Count    int    // records counted by the guards
	Changed  bool   // the destination holds the new output
	Reloaded bool   // its reload command ran successfully
	Restored bool   // the reload failed and the previous file was put back
	Err      error  // nil on success or "unchanged"
}

// Renderer runs the write pipeline. It remembers, per destination, the
// record count of the last good render (for MaxShrink); it is safe for
// concurrent use, but cycles that share destinations must not overlap.
type Renderer struct {
	cmd Commander
	log *slog.Logger

	mu     sync.Mutex
	counts map[string]int      // dest → record count of the last good render
	swept  map[string]struct{} // dests whose stale staging files are gone
}

// Option configures a Renderer.
type Option func(*Renderer)

// WithCommander sets how check and reload commands run (default: Exec).
func WithCommander(c Commander) Option { return func(r *Renderer) { r.cmd = c } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(r *Renderer) { r.log = l } }

// New returns a Renderer.
func New(opts ...Option) *Renderer {
	r := &Renderer{cmd: Exec{}, log: slog.Default(), counts: map[string]int{}, swept: map[string]struct{}{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Preview is a render that was not written: the output next to what the
// destination holds now.
type Preview struct {
	Output  []byte
	Current []byte // the destination's content (nil when it does not exist)
	Exists  bool
	Changed bool // output, mode or owner differ from the destination
}

// Preview renders a job (guards included) and compares it with the
// destination, writing nothing and running no command.
func (r *Renderer) Preview(job Job) (Preview, error) {
	dest, err := resolveDest(job.Spec.Dest)
	if err != nil {
		return Preview{}, fmt.Errorf("%s: %w", job.Spec.name(), err)
	}
	job.Spec.Dest = dest
	cur, err := readCurrent(job.Spec.Dest)
	if err != nil {
		return Preview{}, fmt.Errorf("%s: %w", job.Spec.name(), err)
	}
	out, _, err := r.execute(job, len(cur.data))
	if err != nil {
		return Preview{}, err
	}
	return Preview{Output: out, Current: cur.data, Exists: cur.exists, Changed: !unchanged(cur, out, want(job.Spec, cur))}, nil
}

// execute applies the guards and renders a job into memory; sizeHint is
// the expected output size (the current destination's).
func (r *Renderer) execute(job Job, sizeHint int) ([]byte, int, error) {
	s := job.Spec
	n := job.Source.Count()
	if s.MinEntries > 0 && n < s.MinEntries {
		return nil, n, fmt.Errorf("%s: %w: %d records, min_entries is %d", s.name(), ErrRefused, n, s.MinEntries)
	}
	if s.MaxShrink > 0 && !job.Force {
		r.mu.Lock()
		prev, ok := r.counts[s.Dest]
		r.mu.Unlock()
		if ok && prev > 0 && n < prev && float64(prev-n)/float64(prev) > s.MaxShrink {
			return nil, n, fmt.Errorf("%s: %w: records dropped from %d to %d, more than max_shrink %g%% (force to apply)",
				s.name(), ErrRefused, prev, n, s.MaxShrink*100)
		}
	}
	var buf bytes.Buffer
	buf.Grow(sizeHint + sizeHint/8 + 512)
	if err := job.Source.Render(&buf); err != nil {
		return nil, n, fmt.Errorf("%s: render: %w", s.name(), err)
	}
	return buf.Bytes(), n, nil
}

// Cycle brings every job's destination up to date and then runs the reload
// commands: each distinct reload command once, after all writes, in the
// order the jobs name them. When a reload fails, every file it was run for
// is restored to its previous content, the reload runs again, and both
// errors are reported on those jobs.
//
// A job that fails (guard, render, check, write) leaves its destination
// untouched and does not stop the others. The returned error joins every
// job's error; the results say what each job did.
func (r *Renderer) Cycle(ctx context.Context, jobs []Job) ([]Result, error) {
	jobs = slices.Clone(jobs) // the destinations get resolved in place
	results := make([]Result, len(jobs))
	prevs := make([]current, len(jobs))
	reloads := make([]string, len(jobs)) // expanded reload command per job
	pendingBefore := make([]bool, len(jobs))
	seen := make(map[string]int, len(jobs))
	for i, job := range jobs {
		dest, err := resolveDest(job.Spec.Dest)
		job.Spec.Dest = cmp.Or(dest, job.Spec.Dest)
		jobs[i] = job
		s, res := job.Spec, &results[i]
		*res = Result{Name: s.name(), Dest: s.Dest}
		if err != nil {
			res.Err = fmt.Errorf("%s: %w", s.name(), err)
			continue
		}
		if j, dup := seen[filepath.Clean(s.Dest)]; dup {
			res.Err = fmt.Errorf("%s: destination %s is also written by %s", s.name(), s.Dest, results[j].Name)
			continue
		}
		seen[filepath.Clean(s.Dest)] = i
		if s.Reload != "" {
			var err error
			if reloads[i], err = (command{what: "reload", text: s.Reload}).expand(s.Dest); err != nil {
				res.Err = fmt.Errorf("%s: %w", s.name(), err)
				continue
			}
		}
		// A destination swapped in before but whose reload never succeeded
		// (it failed and could not be rolled back, or berth died between
		// the swap and the reload) is reloaded even if nothing changed now.
		pendingBefore[i] = reloads[i] != "" && pendingReload(s.Dest)
		var markPending func()
		if reloads[i] != "" {
			markPending = func() { setPendingReload(s.Dest, r.log) }
		}
		prevs[i], res.Changed, res.Count, res.Err = r.write(ctx, job, markPending)
		if res.Err == nil && (!res.Changed || reloads[i] == "") && !pendingBefore[i] {
			r.remember(s.Dest, res.Count)
		}
	}

	// Group the jobs to reload by command, in first-seen order.
	var order []string
	groups := map[string][]int{}
	for i := range jobs {
		if reloads[i] == "" || results[i].Err != nil || !(results[i].Changed || pendingBefore[i]) {
			continue
		}
		if _, ok := groups[reloads[i]]; !ok {
			order = append(order, reloads[i])
		}
		groups[reloads[i]] = append(groups[reloads[i]], i)
	}
	for _, line := range order {
		idx := groups[line]
		var timeout time.Duration // the longest any of the jobs allows
		for _, i := range idx {
			timeout = max(timeout, jobs[i].Spec.Timeout)
		}
		err := run(ctx, r.cmd, "reload", line, timeout)
		if err == nil {
			for _, i := range idx {
				results[i].Reloaded = true
				clearPendingReload(jobs[i].Spec.Dest)
				r.remember(jobs[i].Spec.Dest, results[i].Count)
			}
			continue
		}
		// Put back every file this reload was for, then reload once more.
		restoreErrs := make([]error, len(idx))
		for k, i := range idx {
			restoreErrs[k] = r.putBack(jobs[i].Spec, prevs[i])
		}
		again := run(ctx, r.cmd, "reload", line, timeout)
		for k, i := range idx {
			// Restored, the file on disk is again what the process loaded
			// before this cycle, unless that one was pending too.
			if restoreErrs[k] == nil && (again == nil || !pendingBefore[i]) {
				clearPendingReload(jobs[i].Spec.Dest)
			}
			res := &results[i]
			res.Changed = restoreErrs[k] != nil // still the new file if it could not be put back
			res.Restored = restoreErrs[k] == nil
			if res.Restored {
				res.Err = fmt.Errorf("%s: %w; previous file restored", res.Name, err)
			} else {
				res.Err = fmt.Errorf("%s: %w; restoring the previous file failed: %w", res.Name, err, restoreErrs[k])
			}
			if again != nil {
				res.Err = fmt.Errorf("%w; reload after restore also failed: %w", res.Err, again)
			}
		}
	}

	var errs []error
	for _, res := range results {
		if res.Err != nil {
			errs = append(errs, res.Err)
		} else if res.Changed {
			r.log.Info("rendered", "template", res.Name, "dest", res.Dest, "records", res.Count, "reloaded", res.Reloaded)
		}
	}
	return results, errors.Join(errs...)
}

// write runs the first half of the pipeline for one job: read the
// destination, guards, execute, compare, stage, check, backup, swap. It
// returns what the destination held before, and whether it was replaced.
func (r *Renderer) write(ctx context.Context, job Job, beforeSwap func()) (prev current, changed bool, n int, err error) {
	s := job.Spec
	prev, err = readCurrent(s.Dest)
	if err != nil {
		return current{}, false, job.Source.Count(), fmt.Errorf("%s: %w", s.name(), err)
	}
	out, n, err := r.execute(job, len(prev.data))
	if err != nil {
		return current{}, false, n, err
	}
	a := want(s, prev)
	if unchanged(prev, out, a) {
		return prev, false, n, nil
	}
	r.sweepOnce(s.Dest)
	err = replace(r.log, s.Dest, out, a, func(staged string) error {
		if s.Check != "" {
			line, err := command{what: "check", text: s.Check}.expand(staged)
			if err != nil {
				return err
			}
			if err := run(ctx, r.cmd, "check", line, s.Timeout); err != nil {
				return err
			}
		}
		if s.Backup && prev.exists {
			// A copy of the bytes already read, not a hard link: a link to a
			// bind-mounted destination would cross devices.
			if err := replace(r.log, s.Dest+".bak", prev.data, prev.attrs(), nil); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
		}
		if beforeSwap != nil {
			beforeSwap()
		}
		return nil
	})
	if err != nil {
		return prev, false, n, fmt.Errorf("%s: %w", s.name(), err)
	}
	return prev, true, n, nil
}

// putBack restores a destination to what it held before the cycle: the old
// content and attributes, or no file if there was none.
func (r *Renderer) putBack(s Spec, prev current) error {
	if !prev.exists {
		if err := os.Remove(s.Dest); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", s.Dest, err)
		}
		return nil
	}
	return replace(r.log, s.Dest, prev.data, prev.attrs(), nil)
}

// sweepOnce removes, the first time this Renderer writes dest, the staging
// files a killed renderer may have left beside it.
func (r *Renderer) sweepOnce(dest string) {
	r.mu.Lock()
	_, done := r.swept[dest]
	r.swept[dest] = struct{}{}
	r.mu.Unlock()
	if !done {
		sweepStaged(r.log, dest)
	}
}

// remember records the count of a good render for MaxShrink.
func (r *Renderer) remember(dest string, n int) {
	r.mu.Lock()
	r.counts[dest] = n
	r.mu.Unlock()
}

// pendingReloadPath is the marker beside dest saying that dest was
// replaced and its reload has not succeeded since. It survives a crash
// between the swap and the reload. (Its name neither ends in the
// destination's extension nor is visible: include globs such as conf.d/*.conf
// do not pick it up; nor does it match stagePattern, so sweeps keep it.)
func pendingReloadPath(dest string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".reload-pending.berth")
}

func pendingReload(dest string) bool {
	_, err := os.Lstat(pendingReloadPath(dest))
	return err == nil
}

func setPendingReload(dest string, log *slog.Logger) {
	if err := os.WriteFile(pendingReloadPath(dest), nil, 0o600); err != nil {
		log.Warn("cannot mark a pending reload; a crash before the reload would go unnoticed", "dest", dest, "err", err)
	}
}

func clearPendingReload(dest string) { os.Remove(pendingReloadPath(dest)) }
