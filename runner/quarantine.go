package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/store"
)

// maxChecks and maxSearch bound the check runs and the time of one
// quarantine search (Run's loop waits for it). A search that runs out
// quarantines what it found; the render is retried with backoff, and the
// next search starts without those.
const (
	maxChecks = 128
	maxSearch = 2 * time.Minute
)

// maxReason bounds the check error kept per quarantined key.
const maxReason = 2048

// change is one store key whose state differs from the last good render's.
type change struct {
	key  string
	kv   store.KV // the new state; unused when gone
	gone bool     // deleted
}

// entry is one quarantined key: its state when quarantined, and its report.
type entry struct {
	QuarantinedKey
	change
}

// quarantine holds a template's quarantined keys by key. A key leaves it
// as soon as its state differs from the quarantined one (it is then tried
// again with the next render), or when the template changes.
type quarantine map[string]*entry

// list is the quarantine as reported, sorted by key.
func (q quarantine) list() []QuarantinedKey {
	if len(q) == 0 {
		return nil
	}
	out := make([]QuarantinedKey, 0, len(q))
	for _, k := range slices.Sorted(maps.Keys(q)) {
		out = append(out, q[k].QuarantinedKey)
	}
	return out
}

// revert returns kvs with every quarantined key put back to its state in
// good, the last good render's keys: an added key is left out, a modified
// one keeps its last good value, a deleted one stays. A quarantined key
// whose state in kvs is no longer the quarantined one is released first.
// kvs and good are sorted by key; neither is modified.
func (q quarantine) revert(kvs, good []store.KV, log *slog.Logger) []store.KV {
	if len(q) == 0 {
		return kvs
	}
	var back []change // each kept key's last good state
	for key, e := range q {
		cur, present := lookup(kvs, key)
		if present == e.gone || present && !bytes.Equal(cur.Value, e.kv.Value) {
			delete(q, key)
			if present {
				log.Info("quarantined record changed; trying it again", "key", key, "service", e.Service, "container", e.Container)
			} else {
				log.Info("quarantined record deleted; it leaves the quarantine", "key", key, "service", e.Service, "container", e.Container)
			}
			continue
		}
		g, ok := lookup(good, key)
		back = append(back, change{key: key, kv: g, gone: !ok})
	}
	if len(back) == 0 {
		return kvs
	}
	return withChanges(kvs, back)
}

// lookup finds key in kvs, sorted by key.
func lookup(kvs []store.KV, key string) (store.KV, bool) {
	i, ok := slices.BinarySearchFunc(kvs, key, byKey)
	if !ok {
		return store.KV{}, false
	}
	return kvs[i], true
}

// diff lists the keys whose state differs between good and kvs (both
// sorted by key), in key order.
func diff(good, kvs []store.KV) []change {
	var out []change
	i, k := 0, 0
	for i < len(good) || k < len(kvs) {
		switch {
		case k == len(kvs) || i < len(good) && good[i].Key < kvs[k].Key:
			out = append(out, change{key: good[i].Key, gone: true})
			i++
		case i == len(good) || kvs[k].Key < good[i].Key:
			out = append(out, change{key: kvs[k].Key, kv: kvs[k]})
			k++
		default:
			if !bytes.Equal(good[i].Value, kvs[k].Value) {
				out = append(out, change{key: kvs[k].Key, kv: kvs[k]})
			}
			i, k = i+1, k+1
		}
	}
	return out
}

// withChanges returns kvs (sorted by key, not modified) with changes
// applied: each change sets its key's state. The result is sorted by key.
// It costs a copy of kvs and a binary search per change.
func withChanges(kvs []store.KV, changes []change) []store.KV {
	out := slices.Clone(kvs)
	var gone []int // indexes in out, to drop
	var added []store.KV
	for _, c := range changes {
		i, ok := slices.BinarySearchFunc(out, c.key, byKey)
		switch {
		case ok && c.gone:
			gone = append(gone, i)
		case ok:
			out[i] = c.kv
		case !c.gone:
			added = append(added, c.kv)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		kept := out[:gone[0]]
		for k, i := range gone {
			next := len(out)
			if k+1 < len(gone) {
				next = gone[k+1]
			}
			kept = append(kept, out[i+1:next]...)
		}
		out = kept
	}
	if len(added) == 0 {
		return out
	}
	slices.SortFunc(added, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	merged := make([]store.KV, 0, len(out)+len(added))
	i, k := 0, 0
	for i < len(out) || k < len(added) {
		if k == len(added) || i < len(out) && out[i].Key < added[k].Key {
			merged, i = append(merged, out[i]), i+1
		} else {
			merged, k = append(merged, added[k]), k+1
		}
	}
	return merged
}

func byKey(kv store.KV, key string) int { return strings.Compare(kv.Key, key) }

// errBudget ends a search that ran out of check runs.
var errBudget = errors.New("quarantine search: out of check runs")

// search finds culprits among changes, given that try passes with none of
// them applied and fails with fullErr with all of them. It bisects: with
// the culprits found so far taken out, the shortest failing prefix of the
// rest ends with a culprit (binary search between the longest prefix known
// to pass and one known to fail), until all the rest passes. That is about
// k·(log₂ n + 1) runs of try for k culprits among n changes. It returns
// the culprits with the error try gave when each was found, and the rest,
// which passes. A non-nil error (ran out of runs, or stopped returned an
// error) comes with the culprits found so far.
func search(changes []change, fullErr error, try func([]change) error, stopped func() error) (bad []change, reasons []error, rest []change, err error) {
	rest = slices.Clone(changes)
	lo, failErr := 0, fullErr // rest[:lo] passes; all of rest fails with failErr
	runs := 0
	probe := func(cs []change) (fails, stop error) {
		if runs++; runs > maxChecks {
			return nil, errBudget
		}
		fails = try(cs)
		if err := stopped(); err != nil {
			return nil, fmt.Errorf("quarantine search stopped: %w", err)
		}
		return fails, nil
	}
	for {
		hi, hiErr := len(rest), failErr
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			e, stop := probe(rest[:mid])
			if stop != nil {
				return bad, reasons, rest, stop
			}
			if e != nil {
				hi, hiErr = mid, e
			} else {
				lo = mid
			}
		}
		// rest[:hi-1] passes and rest[:hi] fails: rest[hi-1] is a culprit.
		bad, reasons = append(bad, rest[hi-1]), append(reasons, hiErr)
		rest = slices.Delete(rest, hi-1, hi)
		lo = hi - 1
		if lo == len(rest) {
			return bad, reasons, rest, nil // rest is the prefix known to pass
		}
		e, stop := probe(rest)
		if stop != nil {
			return bad, reasons, rest, stop
		}
		if e == nil {
			return bad, reasons, rest, nil
		}
		failErr = e
	}
}

// quarantine handles a job whose check (or execution) failed: it bisects
// over the keys changed since the template's last good render, with the
// check run on staged output only (render.Renderer.Try: no swap, no
// reload), to find the changes that make it fail. It quarantines them and
// sets the job to render the rest, reporting whether it did. It costs
// about 2 + k·(log₂ n + 1) check runs for k culprits among n changes.
// When even the last good data fails, the fault is not in the data (the
// proxy's binary, a disk, the template): nothing is quarantined, the
// failure is retried as any other.
func (s *state) quarantine(j *job) bool {
	t := j.t
	log := s.r.log.With("template", t.conf.Name)
	changes := diff(t.good, j.in.KVs)
	if len(changes) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, maxSearch)
	defer cancel()
	try := func(cs []change) error {
		j.checks++
		in := j.in
		in.KVs, in.Warn = withChanges(t.good, cs), nil
		return s.r.renderer.Try(ctx, render.Job{Spec: t.conf.Spec, Source: bind(j.t.binder, j.tmpl, in)})
	}
	if err := try(nil); ctx.Err() != nil {
		return false
	} else if err != nil {
		log.Warn("the check fails on the last good data too: not a record's fault, nothing quarantined", "err", err)
		return false
	}
	// The failure must repeat with every change in: a check that failed
	// once and passes now is retried, not blamed on a record.
	fullErr := try(changes)
	if ctx.Err() != nil || fullErr == nil {
		return false
	}
	bad, reasons, rest, err := search(changes, fullErr, try, ctx.Err)
	if t.quarantine == nil {
		t.quarantine = quarantine{}
	}
	now := time.Now()
	for i, c := range bad {
		e := &entry{change: c, QuarantinedKey: s.describe(t, c, reasons[i], now)}
		t.quarantine[c.key] = e
		log.Warn("record quarantined: with its change the check fails; the others apply without it until it changes",
			"key", c.key, "service", e.Service, "container", e.Container, "deleted", c.gone, "reason", e.Reason)
	}
	log.Info("quarantine search", "changes", len(changes), "quarantined", len(bad), "checks", j.checks)
	if err != nil {
		log.Warn("quarantine search incomplete; the render is retried", "err", err)
		return false
	}
	j.in.KVs = withChanges(t.good, rest)
	return true
}

// describe maps a quarantined key to the service and container it belongs
// to, where the key has berth's schema.
func (s *state) describe(t *tmplState, c change, reason error, now time.Time) QuarantinedKey {
	q := QuarantinedKey{Key: c.key, Deleted: c.gone, Reason: reason.Error(), Since: now}
	if len(q.Reason) > maxReason {
		q.Reason = strings.ToValidUTF8(q.Reason[:maxReason], "") + " [truncated]"
	}
	k, err := records.ParseKey(t.conf.Options.Prefix, c.key)
	if err != nil {
		k, err = records.ParseKey(records.DefaultPrefix, c.key)
	}
	if err == nil {
		switch k.Kind {
		case records.KindService:
			q.Service, q.Container = k.Service, k.ID
		case records.KindContainer:
			q.Container = k.ID
		}
	}
	return q
}
