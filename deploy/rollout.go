package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// rollout is one revision's rollout.
type rollout struct {
	s   *Service
	rev *Revision
	req Request
	say func(step, format string, args ...any)
	log *slog.Logger

	view    *view
	old     []runtime.Container // the running containers it replaces
	started []runtime.Container // the new ones
	drained bool                // the old ones are drained
}

// run does the rollout in order: start new → healthy → in the proxy →
// drain old → wait the drain → stop (and remove) old. Any failure before
// the old ones stop undoes what was done: the old ones serve again, the
// new ones are taken out and removed.
func (ro *rollout) run(ctx context.Context) (err error) {
	s, svc := ro.s, ro.req.Service
	vctx, stopView := context.WithCancel(context.WithoutCancel(ctx))
	defer stopView()
	ro.view = watchRecords(vctx, s.st, records.ServicesPrefix(s.prefix)+svc+"/", s.prefix, ro.log)
	defer func() {
		if err != nil {
			ro.abort(context.WithoutCancel(ctx), err)
		}
	}()
	cs, err := s.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs {
		if c.Labels[LabelService] == svc && c.Labels[LabelRevision] != "" && c.Running() {
			ro.old = append(ro.old, c)
		}
	}
	tctx, cancel := context.WithTimeout(ctx, timeoutOr(ro.req.Timeout))
	defer cancel()

	// 1. Start the new containers, all at once or MaxSurge at a time;
	// 2. each healthy (its check, or TCP on its port), and registered,
	// before the next batch starts.
	surge := ro.req.MaxSurge
	if surge <= 0 || surge > ro.req.Spec.Replicas {
		surge = ro.req.Spec.Replicas
	}
	var keys []string
	var at store.Revision
	for from := 1; from <= ro.req.Spec.Replicas; from += surge {
		batch, err := ro.start(tctx, from, min(from+surge-1, ro.req.Spec.Replicas))
		if err != nil {
			return err
		}
		k, a, err := ro.healthy(tctx, batch)
		if err != nil {
			return timeoutReason(tctx, err, ro.req.Timeout)
		}
		keys, at = append(keys, k...), max(at, a)
	}
	// 3. Each in the proxy: both colours serve.
	if err := ro.routed(tctx, keys, at, true); err != nil {
		return timeoutReason(tctx, err, ro.req.Timeout)
	}
	// ... and, with a probe, served: the proxy's reload has finished.
	if err := ro.probed(tctx); err != nil {
		return timeoutReason(tctx, err, ro.req.Timeout)
	}
	ro.rev.Serving = time.Now()
	// Recorded, so that a daemon restarted from here on knows the new
	// colour was confirmed serving (Recover finishes only such a rollout).
	if err := ro.s.save(ctx, ro.rev); err != nil {
		ro.log.Warn("deploy: cannot record that the new containers serve; going on", "err", err)
	}
	ro.say(StepRouted, "%d new container(s) in the proxy (store revision %d) after %s", len(ro.started), at, time.Since(ro.rev.Started).Round(time.Millisecond))
	if len(ro.old) == 0 {
		return nil
	}
	// 4. Drain the old ones while they still serve, 5. wait the drain.
	if err := ro.drainOld(ctx); err != nil {
		return err
	}
	// 6. Stop them, and remove them unless kept.
	ro.stopOld(context.WithoutCancel(ctx))
	return nil
}

// timeoutReason names the timeout when it is why err happened.
func timeoutReason(ctx context.Context, err error, d time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("not done within the timeout (%s): %w", timeoutOr(d), err)
	}
	return err
}

// start starts the new containers from to to (1-based) and returns them.
func (ro *rollout) start(ctx context.Context, from, to int) ([]runtime.Container, error) {
	spec := ro.req.Spec
	var batch []runtime.Container
	var names []string
	for i := from; i <= to; i++ {
		c := containerSpec(*ro.rev, fmt.Sprintf("%s-%d-%d", ro.req.Service, ro.rev.Number, i), spec.Image)
		got, err := ro.s.rt.Run(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", c.Name, err)
		}
		ro.started = append(ro.started, got)
		batch = append(batch, got)
		names = append(names, got.Name)
		ro.rev.Containers = append(ro.rev.Containers, got.Name)
		if ro.rev.Digest == "" {
			ro.rev.Digest = got.ImageID
		}
	}
	ro.say(StepStart, "started %d container(s) of %s: %s", len(batch), spec.Image, strings.Join(names, ", "))
	return batch, nil
}

// healthy waits until every new container passes its health check (or,
// without one, accepts TCP on the address its record gives the proxy) and
// has its record; it returns their keys and the revision that has them all.
func (ro *rollout) healthy(ctx context.Context, batch []runtime.Container) ([]string, store.Revision, error) {
	pending := map[string]runtime.Container{}
	for _, c := range batch {
		pending[c.ID] = c
	}
	keys := map[string]string{}
	var at store.Revision
	why := "waiting"
	err := ro.s.until(ctx, func() (bool, error) {
		for id, c0 := range pending {
			c, err := ro.s.rt.Inspect(ctx, id)
			if err != nil {
				if errors.Is(err, runtime.ErrNotFound) {
					return false, fmt.Errorf("container %s is gone", c0.Name)
				}
				why = err.Error()
				return false, nil
			}
			switch {
			case c.State == runtime.StateExited || c.State == runtime.StateDead:
				return false, fmt.Errorf("container %s exited with status %d before it was healthy", c.Name, c.ExitCode)
			case c.Health == runtime.HealthUnhealthy:
				return false, fmt.Errorf("container %s failed its health check", c.Name)
			case c.Health == runtime.HealthStarting || !c.Running():
				why = fmt.Sprintf("container %s is %s (health %s)", c.Name, c.State, c.Health)
				continue
			}
			key, in, rev, ok := ro.view.byID(id)
			if !ok || in.State != records.StateRunning {
				why = fmt.Sprintf("container %s has no record under %s yet", c.Name, records.ServicesPrefix(ro.s.prefix)+ro.req.Service+"/")
				continue
			}
			if c.Health == runtime.HealthNone && in.Address() != "" {
				conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", in.Address())
				if err != nil {
					why = fmt.Sprintf("container %s does not accept TCP on %s yet: %v", c.Name, in.Address(), err)
					continue
				}
				conn.Close()
			}
			keys[id], at = key, max(at, rev)
			delete(pending, id)
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		return nil, 0, wrapWhy(err, why)
	}
	ro.say(StepHealthy, "%d new container(s) healthy and registered", len(batch))
	return slices.Collect(maps.Values(keys)), at, nil
}

// wrapWhy adds what was still awaited to an error of ctx.
func wrapWhy(err error, why string) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", why, err)
	}
	return err
}

// routed waits until every template that reads keys has applied revision
// at (render, check, swap, reload succeeded). With adding, a template that
// quarantined one of the keys fails the wait: that record will not be
// routed.
func (ro *rollout) routed(ctx context.Context, keys []string, at store.Revision, adding bool) error {
	if ro.s.tmpl == nil {
		return nil
	}
	why := "waiting for the templates' status"
	noTemplate := false
	err := ro.s.until(ctx, func() (bool, error) {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		sts, err := ro.s.tmpl.Status(sctx)
		cancel()
		if err != nil {
			why = "the templates are busy: " + err.Error()
			return false, nil
		}
		readers := 0
		for _, ts := range sts {
			if !reads(ts.Mirrors, keys) {
				continue
			}
			readers++
			for _, q := range ts.Quarantined {
				if slices.Contains(keys, q.Key) {
					if adding {
						return false, fmt.Errorf("template %s quarantined %s (its check fails with it: %s)", ts.Name, q.Key, q.Reason)
					}
					why = fmt.Sprintf("template %s quarantined %s: %s", ts.Name, q.Key, q.Reason)
					return false, nil
				}
			}
			if ts.Revision < at {
				why = fmt.Sprintf("template %s has applied store revision %d, not yet %d", ts.Name, ts.Revision, at)
				if ts.LastError != nil {
					why += fmt.Sprintf(" (last error: %v)", ts.LastError)
				}
				return false, nil
			}
		}
		noTemplate = readers == 0
		return true, nil
	})
	if noTemplate {
		ro.log.Info("deploy: no template reads the service's records; nothing to wait for")
	}
	return wrapWhy(err, why)
}

// reads reports whether a template with these mirrors reads any of keys.
func reads(mirrors []watcher.Health, keys []string) bool {
	for _, m := range mirrors {
		for _, k := range keys {
			if strings.HasPrefix(k, m.Prefix) {
				return true
			}
		}
	}
	return false
}

// drainOld takes the old containers out of the proxy while they still
// run, then waits the drain period.
func (ro *rollout) drainOld(ctx context.Context) error {
	s := ro.s
	if s.drainer == nil || s.drain <= 0 {
		return nil // stopping drains them (the registrar's drain)
	}
	ids := ids(ro.old)
	if err := s.drainer.Drain(ctx, ids...); err != nil {
		return fmt.Errorf("drain the old containers: %w", err)
	}
	ro.drained = true
	// Their records draining (or gone), and the proxy without them. While
	// the store is unavailable the rollout pauses here: the proxy still
	// routes to the old containers (their records could not change), so
	// stopping them would fail requests. A reachable store whose proxy
	// does not confirm it in time is logged: the new colour serves, and
	// the old one goes after the drain either way.
	for paused, downLast := false, false; ; {
		err := ro.settled(ctx, ids, false, s.drain+10*time.Second)
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted while draining the old containers: %w", ctx.Err())
		}
		if err == nil {
			if paused {
				ro.say(StepDrain, "the store is back: the old containers' drain is in the proxy; going on")
			}
			break
		}
		if uerr := ro.s.reachable(ctx); uerr != nil {
			if !paused {
				ro.say(StepDrain, "paused: the store is unavailable (%v); the old containers serve on until their drain reaches the proxy", uerr)
			}
			paused, downLast = true, true
			continue
		}
		if downLast {
			// Back during that wait: the proxy gets a full one now.
			ro.say(StepDrain, "the store is back; waiting for the old containers' drain to reach the proxy")
			downLast = false
			continue
		}
		ro.log.Warn("deploy: the proxy did not confirm the old containers drained; stopping them after the drain anyway", "err", err)
		break
	}
	ro.say(StepDrain, "%d old container(s) draining; waiting %s", len(ids), s.drain)
	select {
	case <-time.After(s.drain):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("interrupted while draining the old containers: %w", ctx.Err())
	}
}

// settled waits until the records of ids are running (serving) or
// draining or gone (!serving) and every template has applied that, for at
// most limit.
func (ro *rollout) settled(ctx context.Context, ids []string, serving bool, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var keys []string
	var at store.Revision
	err := ro.s.until(ctx, func() (bool, error) {
		keys, at = nil, 0
		for _, id := range ids {
			key, in, rev, ok := ro.view.byID(id)
			if running := ok && in.State == records.StateRunning; running != serving {
				return false, nil
			}
			if key != "" {
				keys = append(keys, key)
			}
			at = max(at, rev)
		}
		return true, nil
	})
	if err != nil {
		return wrapWhy(err, "their records have not changed yet")
	}
	return ro.routed(ctx, keys, at, false)
}

// stopOld stops the old containers (the registrar removes their records)
// and removes them, unless KeepOld. Stopped containers of earlier
// revisions kept before are removed too.
func (ro *rollout) stopOld(ctx context.Context) {
	s := ro.s
	var wg sync.WaitGroup
	for _, c := range ro.old {
		wg.Go(func() {
			if err := s.rt.Stop(ctx, c.ID, s.grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				ro.log.Warn("deploy: cannot stop an old container", "container", c.Name, "err", err)
			}
			if !ro.req.KeepOld {
				ro.remove(ctx, c)
			}
		})
	}
	wg.Wait()
	if cs, err := s.rt.List(ctx); err == nil {
		for _, c := range cs {
			if c.Labels[LabelService] == ro.req.Service && c.Labels[LabelRevision] != "" && !c.Running() &&
				!slices.ContainsFunc(ro.old, func(o runtime.Container) bool { return o.ID == c.ID && ro.req.KeepOld }) &&
				!slices.ContainsFunc(ro.started, func(n runtime.Container) bool { return n.ID == c.ID }) {
				ro.remove(ctx, c)
			}
		}
	}
	what := "stopped and removed"
	if ro.req.KeepOld {
		what = "stopped (kept: --keep-old)"
	}
	ro.say(StepStop, "%d old container(s) %s", len(ro.old), what)
}

func (ro *rollout) remove(ctx context.Context, c runtime.Container) {
	if err := ro.s.rt.Remove(ctx, c.ID, runtime.Force()); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		ro.log.Warn("deploy: cannot remove a container", "container", c.Name, "err", err)
	}
}

// abort undoes a failed rollout: the old containers serve again (if they
// were drained), then the new ones leave the proxy and are removed.
func (ro *rollout) abort(ctx context.Context, cause error) {
	s := ro.s
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ro.say(StepAbort, "rollout failed: %v; removing the %d new container(s)", cause, len(ro.started))
	if ro.drained {
		ids := ids(ro.old)
		if err := s.drainer.Undrain(ctx, ids...); err != nil {
			ro.log.Error("deploy: cannot return the old containers to service", "err", err)
		}
		if err := ro.settled(ctx, ids, true, 20*time.Second); err != nil {
			ro.log.Warn("deploy: the proxy did not confirm the old containers serve again", "err", err)
		}
	}
	// The new ones that reached the store leave the proxy before they stop.
	var routedIDs []string
	for _, c := range ro.started {
		if _, in, _, ok := ro.view.byID(c.ID); ok && in.State == records.StateRunning {
			routedIDs = append(routedIDs, c.ID)
		}
	}
	if len(routedIDs) > 0 && s.drainer != nil && s.drain > 0 {
		if err := s.drainer.Drain(ctx, routedIDs...); err == nil {
			if err := ro.settled(ctx, routedIDs, false, s.drain+10*time.Second); err != nil {
				ro.log.Warn("deploy: the proxy did not confirm the new containers left", "err", err)
			}
			time.Sleep(s.drain)
		}
	}
	var wg sync.WaitGroup
	for _, c := range ro.started {
		wg.Go(func() {
			_ = s.rt.Stop(ctx, c.ID, s.grace)
			ro.remove(ctx, c)
		})
	}
	wg.Wait()
}

func ids(cs []runtime.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// reachable reports whether the store answers (nil) or why not.
func (s *Service) reachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.st.Get(ctx, records.DeploymentLockKey(s.prefix, "reachable"))
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// until polls cond until it is done, fails, or ctx ends.
func (s *Service) until(ctx context.Context, cond func() (bool, error)) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		done, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// view follows one service's instance records: a listing, then a watch
// from its revision (listed again when the watch breaks), so that each
// record's last change has its exact revision, deletions included.
type view struct {
	prefix string // the key prefix of berth's records
	mu     sync.Mutex
	recs   map[string]viewEntry // key → last state
}

type viewEntry struct {
	in      records.Instance
	rev     store.Revision
	deleted bool
}

func watchRecords(ctx context.Context, st store.Store, dir, prefix string, log *slog.Logger) *view {
	v := &view{prefix: prefix, recs: map[string]viewEntry{}}
	ready := make(chan struct{})
	go func() {
		once := sync.OnceFunc(func() { close(ready) })
		defer once()
		for delay := 100 * time.Millisecond; ctx.Err() == nil; delay = min(2*delay, 2*time.Second) {
			kvs, rev, err := st.List(ctx, dir)
			if err != nil {
				log.Warn("deploy: cannot list the service's records; retrying", "err", err)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			v.replace(kvs, rev)
			once()
			for resp := range st.Watch(ctx, dir, rev) {
				if resp.Err != nil {
					log.Warn("deploy: the watch of the service's records broke; listing again", "err", resp.Err)
					break
				}
				delay = 100 * time.Millisecond
				for _, ev := range resp.Events {
					v.apply(ev)
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
	}
	return v
}

func (v *view) replace(kvs []store.KV, rev store.Revision) {
	v.mu.Lock()
	defer v.mu.Unlock()
	seen := map[string]bool{}
	for _, kv := range kvs {
		seen[kv.Key] = true
		v.put(kv)
	}
	for k, e := range v.recs {
		if !seen[k] && !e.deleted {
			// Gone while the watch was down: when exactly is not known,
			// the listing's revision is an upper bound.
			v.recs[k] = viewEntry{in: e.in, rev: rev, deleted: true}
		}
	}
}

func (v *view) apply(ev store.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ev.Type == store.EventDelete {
		e := v.recs[ev.KV.Key]
		v.recs[ev.KV.Key] = viewEntry{in: e.in, rev: ev.KV.ModRevision, deleted: true}
		return
	}
	v.put(ev.KV)
}

func (v *view) put(kv store.KV) {
	var in records.Instance
	if json.Unmarshal(kv.Value, &in) != nil {
		return
	}
	if k, err := records.ParseKey(v.prefix, kv.Key); err == nil && in.ID == "" {
		in.ID = k.ID
	}
	v.recs[kv.Key] = viewEntry{in: in, rev: kv.ModRevision}
}

// byID returns the record of container id: its key, value (State "" when
// deleted), the revision of its last change, and whether it exists.
func (v *view) byID(id string) (key string, in records.Instance, rev store.Revision, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, e := range v.recs {
		if e.in.ID != id {
			continue
		}
		if e.deleted {
			return k, records.Instance{ID: id}, e.rev, false
		}
		return k, e.in, e.rev, true
	}
	return "", records.Instance{}, 0, false
}
