package runner

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// job is one template's render attempt in a cycle.
type job struct {
	t      *tmplState
	tmpl   *dialect.Template
	gen    int
	data   []uint64      // the snapshot's source generations
	tick   bool          // an interval tick: rendered even if nothing changed
	full   []store.KV    // the snapshot's keys
	in     dialect.Input // what is rendered: full, with the quarantined keys at their last good state
	warned map[string]bool
	res    render.Result
	checks int           // check runs of a quarantine search
	paced  time.Duration // how long reload pacing held it back
	live   liveJob
}

// render runs one cycle over the templates that are due: collect (snapshot,
// quarantine, skip no-ops) → cycle (execute … reload, in package render) →
// isolate (quarantine the records that fail the check, render the rest)
// → record.
func (s *state) render(batch map[*tmplState]bool) {
	jobs := s.collect(batch)
	if len(jobs) == 0 {
		return
	}
	start := time.Now()
	s.cycle(jobs)
	s.isolate(jobs)
	now := time.Now()
	for _, j := range jobs {
		s.record(j, now, now.Sub(start))
	}
}

// collect snapshots each due template's data, reverts its quarantined
// keys, and skips the templates whose exact snapshot and template are
// already applied.
func (s *state) collect(batch map[*tmplState]bool) []*job {
	var jobs []*job
	for t := range batch {
		if s.tmpls[t.conf.Name] != t {
			continue // replaced or removed by an update meanwhile
		}
		in, dataGens := snapshot(t.keys, t.sources)
		t.mu.Lock()
		tmpl, gen, tick := t.tmpl, t.tmplGen, t.ticked
		t.ticked = false
		t.mu.Unlock()
		if tmpl == nil {
			continue // never parsed: nothing to render until its file is fixed
		}
		if !tick && t.applied && slices.Equal(t.appliedData, dataGens) && t.appliedGen == gen && !t.live.stale() {
			continue // this exact snapshot and template are already applied
		}
		now := time.Now()
		if t.conf.Spec.Reload != "" && t.pace.hold(now, func() { s.send(s.ctx, t) }) {
			if tick { // keep the tick for the render the pacing lets through
				t.mu.Lock()
				t.ticked = true
				t.mu.Unlock()
			}
			continue
		}
		log := s.r.log.With("template", t.conf.Name)
		if gen != t.quarGen && len(t.quarantine) > 0 {
			log.Info("template changed; its quarantined records are tried again", "records", len(t.quarantine))
			clear(t.quarantine)
		}
		t.quarGen = gen
		j := &job{t: t, tmpl: tmpl, gen: gen, data: dataGens, full: in.KVs, tick: tick, paced: t.pace.released(now)}
		in.KVs = t.quarantine.revert(in.KVs, t.good, log)
		// {{warn}}: log what the previous render did not already report,
		// so a lasting conflict is not logged at every change.
		cur, prev := map[string]bool{}, t.warned
		warn := s.r.warner(t.conf.Name)
		in.Warn, in.Env = func(msg string) {
			if !cur[msg] && !prev[msg] {
				warn(msg)
			}
			cur[msg] = true
		}, s.r.env
		j.in, j.warned = in, cur
		t.live.bind(j)
		jobs = append(jobs, j)
	}
	return jobs
}

// cycle renders jobs in one render cycle. A cycle under way finishes even
// when Run is asked to stop: killing a reload half-way would roll the file
// back and leave the proxy to reload again after the restart. Its commands
// have their own timeouts.
func (s *state) cycle(jobs []*job) {
	rjobs := make([]render.Job, len(jobs))
	for i, j := range jobs {
		rjobs[i] = render.Job{Spec: j.t.conf.Spec, Source: bind(j.t.binder, j.tmpl, j.in)}
	}
	results, _ := s.r.renderer.Cycle(context.WithoutCancel(s.ctx), rjobs)
	for i, res := range results {
		jobs[i].res = res
	}
}

// isolate looks, for every job whose check failed on changed data, for
// the changed keys that make it fail (Quarantine), and renders the jobs
// that found them again without them, in one more cycle.
func (s *state) isolate(jobs []*job) {
	var again []*job
	for _, j := range jobs {
		if quarantinable(j.res.Err) && s.quarantine(j) {
			again = append(again, j)
		}
	}
	if len(again) > 0 {
		s.cycle(again)
	}
}

// quarantinable reports whether a failed render may be the data's fault:
// the check failed, or the template failed to execute on the data (not a
// guard, a write or a reload).
func quarantinable(err error) bool {
	var ce *render.CommandError
	if errors.As(err, &ce) {
		return ce.What == "check"
	}
	var de *dialect.Error
	return errors.As(err, &de) && !errors.Is(err, dialect.ErrNoData)
}

// record keeps what a job did, schedules the retry of a failure, and
// reports the attempt to the observer.
func (s *state) record(j *job, now time.Time, took time.Duration) {
	t, res := j.t, j.res
	t.warned = j.warned
	rev := j.in.Revision
	log := s.r.log.With("template", t.conf.Name, "dest", res.Dest, "revision", rev)
	if res.Err == nil {
		t.applied, t.appliedData, t.appliedRev, t.appliedGen = true, j.data, rev, j.gen
		t.good = j.in.KVs
		t.live.applied(j)
		t.lastRender, t.lastErr, t.retry, t.failingSince = now, nil, 0, time.Time{}
		if res.Changed { // the render package logs what it wrote
			t.lastChange = now
			t.renders++
			t.deb.Rendered()
		}
		if res.Reloaded {
			t.pace.reloaded(now, res.Cost)
		}
	} else if errors.Is(res.Err, dialect.ErrPending) {
		// Held, not failed: the source notifies the answer it waits for.
		t.lastErr, t.applied = res.Err, false
		log.Info("render held until its data arrives; keeping the last good output", "err", res.Err)
	} else {
		t.lastErr = res.Err
		t.applied = false
		t.failures++
		t.failingSince = cmp.Or(t.failingSince, now)
		if errors.Is(res.Err, render.ErrRefused) {
			// A guard refused this data; new data will trigger a new try.
			log.Warn("render refused; keeping the last good output", "err", res.Err)
		} else {
			t.retry = min(max(2*t.retry, minRetry), maxRetry)
			log.Error("render failed; keeping the last good output", "err", res.Err, "retry_in", t.retry)
			s.scheduleRetry(t, t.retry)
		}
	}
	if res.Err == nil && t.binder != nil {
		t.binder.Applied(t.conf, res)
	}
	if res.Err == nil && s.r.applied != nil {
		s.r.applied(s.ctx, Applied{Template: t.conf, Result: res, Tick: j.tick})
	}
	if s.r.observe != nil {
		s.r.observe(Observation{
			Template: t.conf.Name, Revision: rev, Result: res, Took: took,
			Quarantined: t.quarantine.list(), Checks: j.checks, FailingSince: t.failingSince,
			Paced: j.paced,
		})
	}
}
