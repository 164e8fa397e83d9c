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
	"sync"
	"time"
)

// ErrRefused marks a render that a guard (min_entries, max_shrink, the
// empty guard) refused:
// the last good file stays in place. Test with errors.Is.
var ErrRefused = errors.New("render refused")

// Spec says where and how one template's output is written. The zero value
// of every optional field means "not set".
type Spec struct {
	Name   string      // for logs and errors; Dest when empty
	Dest   string      // the destination file; a symbolic link is followed (the link stays)
	Mode   os.FileMode // 0: keep the destination's mode (0644 for a new file)
	UID    *int        // nil: keep the destination's owner (a new file: the process's)
	GID    *int        // nil: keep the destination's group
	Backup bool        // keep the previous file as Dest + ".bak"
	Check  string      // shell command run on the staged file before the swap; {{.src}} is its path
	// CheckInPlace runs Check on the real configuration instead: the new
	// file is swapped in, checked ({{.src}} is Dest), and swapped back out
	// if the check fails, before any reload. For conf.d fragments, which
	// are only valid inside the configuration that includes them.
	CheckInPlace bool
	Reload       string // shell command run after the swap; {{.src}} is Dest
	// GenerationCheck is a shell command that succeeds once the process
	// Reload signals runs a single generation (the workers of the previous
	// reload have exited). Before each reload it is run every
	// generationPoll until it succeeds, for at most Timeout; then the
	// reload runs anyway. "": no wait.
	GenerationCheck string
	Timeout         time.Duration

	// MinEntries refuses to render when the template counts fewer records.
	MinEntries int
	// MaxShrink refuses to render when the record count drops by more than
	// this fraction (0 < MaxShrink < 1) from the last good render, also
	// the last one before a restart. 0: off.
	MaxShrink float64
	// AllowEmpty lets an empty (or white-space only) output replace a
	// destination that is not empty; by default that is refused.
	AllowEmpty bool
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
	// Cost is how long its check and reload commands ran (a reload shared
	// by several jobs counts for each); 0 when none ran.
	Cost time.Duration
	// GenerationWait is how long its reload waited for the previous
	// generation to exit (Spec.GenerationCheck).
	GenerationWait time.Duration
}

// Renderer runs the write pipeline. It remembers, per destination, the
// record count of the last good render (for MaxShrink); it is safe for
// concurrent use, but cycles that share destinations must not overlap.
type Renderer struct {
	cmd Commander
	log *slog.Logger

	mu     sync.Mutex
	counts map[string]int      // dest → record count of the last good render
	saved  map[string]int      // dest → the count kept beside it (countPath)
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
	r := &Renderer{cmd: Exec{}, log: slog.Default(), counts: map[string]int{}, saved: map[string]int{}, swept: map[string]struct{}{}}
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
	out, _, err := r.execute(job, cur, true)
	if err != nil {
		return Preview{}, err
	}
	return Preview{Output: out, Current: cur.data, Exists: cur.exists, Changed: !unchanged(cur, out, want(job.Spec, cur))}, nil
}

// Try renders a job and runs its check command on a staged copy, in the
// destination's directory, as Cycle would; then it removes the copy. It
// never swaps, reloads or remembers anything: the destination and the
// process it configures are untouched. The guards (min_entries,
// max_shrink, the empty guard) are not applied: Try answers only whether
// this output renders and passes the check. The error is the render error
// or the check's *CommandError; nil means it would pass.
//
// With CheckInPlace the check can only run where the output goes: Try
// swaps it in, checks, and always swaps the previous file back (see
// swapChecked); nothing is reloaded.
func (r *Renderer) Try(ctx context.Context, job Job) error {
	s := job.Spec
	dest, err := resolveDest(s.Dest)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	s.Dest = dest
	var buf bytes.Buffer
	if err := job.Source.Render(&buf); err != nil {
		return fmt.Errorf("%s: render: %w", s.name(), err)
	}
	if s.Check == "" {
		return nil
	}
	if s.CheckInPlace {
		if err := r.tryInPlace(ctx, s, buf.Bytes()); err != nil {
			return fmt.Errorf("%s: %w", s.name(), err)
		}
		return nil
	}
	cur, err := readCurrent(s.Dest)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	// Staged with the attributes Cycle would give it: a check that runs
	// as another user reads it as it would the real one.
	st, err := stage(s.Dest, buf.Bytes(), want(s, cur))
	if err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	defer st.discard()
	if err := r.check(ctx, s, st.path); err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	return nil
}

// execute renders a job into memory; guarded, it applies the guards
// first (min_entries, max_shrink) and after (the empty guard) against cur,
// what the destination holds now.
func (r *Renderer) execute(job Job, cur current, guarded bool) ([]byte, int, error) {
	s := job.Spec
	n := job.Source.Count()
	if guarded {
		if err := r.guardCount(job, n); err != nil {
			return nil, n, err
		}
	}
	var buf bytes.Buffer
	size := len(cur.data)
	buf.Grow(size + size/8 + 512)
	if err := job.Source.Render(&buf); err != nil {
		return nil, n, fmt.Errorf("%s: render: %w", s.name(), err)
	}
	if guarded {
		if err := guardEmpty(s, cur, buf.Bytes()); err != nil {
			return nil, n, err
		}
	}
	return buf.Bytes(), n, nil
}

// task is one job on its way through a cycle: execute → compare → stage →
// check → swap, then (grouped by command) reload → rollback.
type task struct {
	job     Job
	res     Result
	reload  string  // expanded reload command; "" for none
	pending bool    // dest was swapped in before and never reloaded since
	prev    current // what dest held before this cycle
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
	tasks := r.prepare(jobs)
	for _, t := range tasks {
		if t.res.Err == nil {
			t.res.Err = r.write(ctx, t)
		}
		if t.res.Err == nil && (!t.res.Changed || t.reload == "") && !t.pending {
			r.remember(t.job.Spec, t.res.Count) // nothing to reload: good as it is
		}
	}
	r.reloadAll(ctx, tasks)
	results := make([]Result, len(tasks))
	var errs []error
	for i, t := range tasks {
		results[i] = t.res
		if t.res.Err != nil {
			errs = append(errs, t.res.Err)
		} else if t.res.Changed {
			r.log.Info("rendered", "template", t.res.Name, "dest", t.res.Dest, "records", t.res.Count, "reloaded", t.res.Reloaded)
		}
	}
	return results, errors.Join(errs...)
}

// prepare resolves each job's destination (a symbolic link's target),
// refuses a destination two jobs write, and expands the reload commands.
func (r *Renderer) prepare(jobs []Job) []*task {
	tasks := make([]*task, len(jobs))
	seen := make(map[string]*task, len(jobs))
	for i, job := range jobs {
		dest, err := resolveDest(job.Spec.Dest)
		job.Spec.Dest = cmp.Or(dest, job.Spec.Dest)
		s := job.Spec
		t := &task{job: job, res: Result{Name: s.name(), Dest: s.Dest}}
		tasks[i] = t
		if err != nil {
			t.res.Err = fmt.Errorf("%s: %w", s.name(), err)
			continue
		}
		if o, dup := seen[filepath.Clean(s.Dest)]; dup {
			t.res.Err = fmt.Errorf("%s: destination %s is also written by %s", s.name(), s.Dest, o.res.Name)
			continue
		}
		seen[filepath.Clean(s.Dest)] = t
		if s.Reload != "" {
			if t.reload, err = (command{what: "reload", text: s.Reload}).expand(s.Dest); err != nil {
				t.res.Err = fmt.Errorf("%s: %w", s.name(), err)
				continue
			}
			// A destination swapped in before but whose reload never
			// succeeded (it failed and could not be rolled back, or berth
			// died between the swap and the reload) is reloaded even if
			// nothing changed now.
			t.pending = pendingReload(s.Dest)
		}
	}
	return tasks
}

// write runs the first half of the pipeline for one task: read the
// destination, execute (with the guards), compare, stage, check, backup,
// swap. It sets the task's previous content, count and Changed.
func (r *Renderer) write(ctx context.Context, t *task) error {
	s := t.job.Spec
	if err := r.recoverInPlace(s.Dest); err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	var err error
	if t.prev, err = readCurrent(s.Dest); err != nil {
		t.res.Count = t.job.Source.Count()
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	out, n, err := r.execute(t.job, t.prev, true)
	t.res.Count = n
	if err != nil {
		return err
	}
	a := want(s, t.prev)
	if unchanged(t.prev, out, a) {
		return nil
	}
	r.sweepOnce(s.Dest)
	st, err := stage(s.Dest, out, a)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	defer st.discard()
	inPlace := s.CheckInPlace && s.Check != ""
	if s.Check != "" {
		defer func(start time.Time) { t.res.Cost += time.Since(start) }(time.Now())
	}
	if !inPlace {
		if err := r.check(ctx, s, st.path); err != nil {
			return fmt.Errorf("%s: %w", s.name(), err)
		}
	}
	if err := r.backup(s, t.prev); err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	if t.reload != "" {
		setPendingReload(s.Dest, r.log)
	}
	if inPlace {
		restored, err := r.swapChecked(ctx, s, st, t.prev)
		if err != nil {
			if restored && !t.pending {
				clearPendingReload(s.Dest) // dest is what the process loaded
			}
			t.res.Changed = !restored
			return fmt.Errorf("%s: %w", s.name(), err)
		}
	} else if err := st.swap(r.log); err != nil {
		return fmt.Errorf("%s: %w", s.name(), err)
	}
	t.res.Changed = true
	return nil
}

// check runs a Spec's check command on the staged file at path.
func (r *Renderer) check(ctx context.Context, s Spec, path string) error {
	if s.Check == "" {
		return nil
	}
	line, err := command{what: "check", text: s.Check}.expand(path)
	if err != nil {
		return err
	}
	return run(ctx, r.cmd, "check", line, s.Timeout)
}

// backup keeps the destination's previous content as Dest.bak when the
// Spec asks for it: a copy of the bytes already read, not a hard link (a
// link to a bind-mounted destination would cross devices).
func (r *Renderer) backup(s Spec, prev current) error {
	if !s.Backup || !prev.exists {
		return nil
	}
	if err := replace(r.log, s.Dest+".bak", prev.data, prev.attrs()); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// reloadAll runs each distinct reload command once, for the tasks that
// changed their destination (or still owe a reload), in first-seen order;
// a failed reload is rolled back.
func (r *Renderer) reloadAll(ctx context.Context, tasks []*task) {
	var order []string
	groups := map[string][]*task{}
	for _, t := range tasks {
		if t.reload == "" || t.res.Err != nil || !(t.res.Changed || t.pending) {
			continue
		}
		if _, ok := groups[t.reload]; !ok {
			order = append(order, t.reload)
		}
		groups[t.reload] = append(groups[t.reload], t)
	}
	for _, line := range order {
		group := groups[line]
		var timeout time.Duration // the longest any of the jobs allows
		var genCheck string
		for _, t := range group {
			timeout = max(timeout, t.job.Spec.Timeout)
			genCheck = cmp.Or(genCheck, t.job.Spec.GenerationCheck)
		}
		waited := r.awaitGeneration(ctx, genCheck, timeout)
		start := time.Now()
		err := run(ctx, r.cmd, "reload", line, timeout)
		for _, t := range group {
			t.res.Cost += time.Since(start)
			t.res.GenerationWait = waited
		}
		if err == nil {
			for _, t := range group {
				t.res.Reloaded = true
				clearPendingReload(t.job.Spec.Dest)
				r.remember(t.job.Spec, t.res.Count)
			}
			continue
		}
		r.rollback(ctx, group, line, timeout, err)
	}
}

// generationPoll is how often a generation check is run again.
const generationPoll = 50 * time.Millisecond

// awaitGeneration runs check until it succeeds, for at most timeout
// (DefaultTimeout when 0), and returns how long that took. A check still
// failing at the bound is logged; the reload goes ahead.
func (r *Renderer) awaitGeneration(ctx context.Context, check string, timeout time.Duration) time.Duration {
	if check == "" {
		return 0
	}
	timeout = cmp.Or(timeout, DefaultTimeout)
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := run(ctx, r.cmd, "generation check", check, time.Until(deadline))
		if err == nil {
			return time.Since(start)
		}
		if time.Now().Add(generationPoll).After(deadline) || ctx.Err() != nil {
			r.log.Warn("previous generation still running; reloading anyway", "waited", time.Since(start), "err", err)
			return time.Since(start)
		}
		select {
		case <-time.After(generationPoll):
		case <-ctx.Done():
		}
	}
}

// rollback puts back every file a failed reload was for, then reloads
// once more, and reports both on each task.
func (r *Renderer) rollback(ctx context.Context, group []*task, line string, timeout time.Duration, reloadErr error) {
	restoreErrs := make([]error, len(group))
	for k, t := range group {
		restoreErrs[k] = r.putBack(t.job.Spec, t.prev)
	}
	start := time.Now()
	again := run(ctx, r.cmd, "reload", line, timeout)
	for k, t := range group {
		t.res.Cost += time.Since(start)
		// Restored, the file on disk is again what the process loaded
		// before this cycle, unless that one was pending too.
		if restoreErrs[k] == nil && (again == nil || !t.pending) {
			clearPendingReload(t.job.Spec.Dest)
		}
		res := &t.res
		res.Changed = restoreErrs[k] != nil // still the new file if it could not be put back
		res.Restored = restoreErrs[k] == nil
		if res.Restored {
			res.Err = fmt.Errorf("%s: %w; previous file restored", res.Name, reloadErr)
		} else {
			res.Err = fmt.Errorf("%s: %w; restoring the previous file failed: %w", res.Name, reloadErr, restoreErrs[k])
		}
		if again != nil {
			res.Err = fmt.Errorf("%w; reload after restore also failed: %w", res.Err, again)
		}
	}
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
	return replace(r.log, s.Dest, prev.data, prev.attrs())
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
