// Package runner keeps template outputs current: it ties sources of data
// (Source: mirrors of store prefixes, a Docker Engine's containers for
// docker-gen mode), quiescence and file watches to the render pipeline,
// the way consul-template's manager ties dependencies to its renderer.
// It is berth's one watch → render loop. One source per key is shared by
// every template that reads it; a template renders only after all its
// sources finished their first sync; a failed render, check or reload is
// retried with backoff and the last good output stays in place.
//
// Quiet window: a source's notification arms a template's wait (min:max)
// only if the data the template reads changed (its sources' generations
// differ from what it last saw), so events that change nothing it renders
// do not hold its render back.
//
// Files: runner.go (Runner, options, Once), source.go (Source and the
// options that plug sources, triggers and hooks in), state.go (Run's loop,
// the set of templates, shared sources), template.go (one template's state
// and watch goroutine), cycle.go (a render cycle: collect → cycle →
// isolate → record), quarantine.go, status.go.
//
// Edits settle: a template's file (main or include) is re-read only after
// its writes have gone quiet for the settle window (config settle,
// DefaultSettle), and replaces the parsed version only if it parses.
//
// Quarantine: when a template's check fails (or it fails to execute) on
// data that changed since its last good render, the runner bisects over
// the changed keys (added, modified, deleted), running the check on staged
// output only (render.Renderer.Try), finds the keys whose change makes it
// fail, and renders, checks, swaps and reloads without them: everyone
// else's changes apply. A quarantined key is rendered at its last good
// state (an addition left out, a modification at its old value) until its
// value changes; it is then tried again (a deleted one just goes). A
// template edit tries them all again. If the last good data fails too, the
// fault is not in the data: nothing is quarantined and the render is
// retried with backoff. Quarantined keys are logged once, reported in
// TemplateStatus.Quarantined and in every Observation. One-shot mode
// (Once) does not quarantine.
//
// Concurrency: Run owns all state and returns when its context ends;
// Update and Status talk to it over channels and may be called from any
// goroutine while Run runs. Each template has a watch goroutine that only
// sends on Run's due channel and, under the template's mutex, records its
// first sync, re-parsed edits and due interval ticks.
package runner
