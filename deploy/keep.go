package deploy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
)

// Restart backoff of a service's containers that die (per service).
const (
	minRestart = time.Second
	maxRestart = time.Minute
	keepEvery  = time.Second
	restarting = -1 // Service.inFlight: its containers are being restarted
)

// Run keeps this host's deployed services as their revisions say, until
// ctx ends: first it settles rollouts a previous daemon left in progress
// (Recover), then, every second, it replaces the containers of each
// service's current revision that died or went missing, with a backoff
// per service (1 s doubling to 1 min, reset once all run), logging each
// restart. Services with a rollout in flight are left to it.
func (s *Service) Run(ctx context.Context) error {
	for {
		err := s.Recover(ctx)
		if err == nil {
			break
		}
		s.log.Warn("deploy: cannot settle interrupted rollouts yet; retrying", "err", err)
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return nil
		}
	}
	backoff := map[string]time.Duration{} // service → its current restart delay
	next := map[string]time.Time{}        // service → no restart before
	t := time.NewTicker(keepEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
		cur, err := s.current(ctx)
		if err != nil {
			s.log.Debug("deploy: cannot read the revisions", "err", err)
			continue
		}
		cs, err := s.rt.List(ctx)
		if err != nil {
			continue
		}
		for _, rev := range cur {
			missing := s.missing(rev, cs)
			if len(missing) == 0 {
				delete(backoff, rev.Service)
				continue
			}
			if time.Now().Before(next[rev.Service]) {
				continue
			}
			// Claimed like a rollout, so that none starts meanwhile (and
			// none is under way: it is left to finish).
			s.mu.Lock()
			_, busy := s.inFlight[rev.Service]
			if !busy {
				s.inFlight[rev.Service] = restarting
			}
			s.mu.Unlock()
			if busy {
				continue
			}
			d := min(max(2*backoff[rev.Service], minRestart), maxRestart)
			backoff[rev.Service], next[rev.Service] = d, time.Now().Add(d)
			for name, old := range missing {
				s.restart(ctx, rev, name, old, d)
			}
			s.mu.Lock()
			delete(s.inFlight, rev.Service)
			s.mu.Unlock()
		}
	}
}

// current is each of this host's services' last revision that succeeded,
// for the services whose last revision is not in progress and that were
// not undeployed since.
func (s *Service) current(ctx context.Context) ([]Revision, error) {
	all, err := s.revisions(ctx)
	if err != nil {
		return nil, err
	}
	var out []Revision
	for _, hist := range all {
		last := hist[len(hist)-1]
		if last.Outcome == OutcomeInProgress {
			continue
		}
		for i := len(hist) - 1; i >= 0; i-- {
			if hist[i].Outcome == OutcomeUndeployed {
				break // removed: nothing to keep
			}
			if hist[i].Outcome == OutcomeSucceeded {
				if hist[i].Host == s.host {
					out = append(out, hist[i])
				}
				break
			}
		}
	}
	return out, nil
}

// revisions reads every service's revisions, oldest first.
func (s *Service) revisions(ctx context.Context) (map[string][]Revision, error) {
	root := strings.TrimSuffix(records.DeploymentsPrefix(s.prefix, "x"), "x/")
	kvs, _, err := s.st.List(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("deployments: %w", err)
	}
	out := map[string][]Revision{}
	for _, kv := range kvs {
		service, _, _ := strings.Cut(strings.TrimPrefix(kv.Key, root), "/")
		if records.CheckService(service) != nil {
			continue
		}
		// Left out silently here (this runs every second); history, which
		// deploy and berth history read, reports them.
		if r, ok, _ := s.decodeRevision(service, kv); ok {
			out[service] = append(out[service], r)
		}
	}
	return out, nil
}

// missing names the containers of rev that do not run, with the stopped
// one in their place, if any.
func (s *Service) missing(rev Revision, cs []runtime.Container) map[string]*runtime.Container {
	out := map[string]*runtime.Container{}
	for i := 1; i <= rev.Spec.Replicas; i++ {
		out[fmt.Sprintf("%s-%d-%d", rev.Service, rev.Number, i)] = nil
	}
	for _, c := range cs {
		if _, ok := out[c.Name]; !ok || c.Labels[LabelRevision] != strconv.Itoa(rev.Number) {
			continue
		}
		if c.Running() {
			delete(out, c.Name)
		} else {
			out[c.Name] = &c
		}
	}
	return out
}

// restart replaces a container of rev that died (old) or is gone.
func (s *Service) restart(ctx context.Context, rev Revision, name string, old *runtime.Container, backoff time.Duration) {
	log := s.log.With("service", rev.Service, "revision", rev.Number, "container", name)
	if old != nil {
		log = log.With("exit_code", old.ExitCode)
		if err := s.rt.Remove(ctx, old.ID, runtime.Force()); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			log.Warn("deploy: cannot remove a dead container to replace it", "err", err)
			return
		}
	}
	spec := containerSpec(rev, name, cmp.Or(rev.Digest, rev.Spec.Image)) // exactly the image it ran
	if _, err := s.rt.Run(ctx, spec); err != nil {
		log.Warn("deploy: cannot restart a container of the service", "err", err, "retry_in", backoff)
		return
	}
	log.Info("deploy: restarted a container of the service to keep its replicas", "replicas", rev.Spec.Replicas, "next_backoff", backoff)
}

// containerSpec is the spec of container name of rev, from image.
func containerSpec(rev Revision, name, image string) runtime.Spec {
	c := rev.Spec.Container
	c.Name, c.Image = name, image
	c.Env = slices.Clone(c.Env)
	c.Labels = map[string]string{}
	for k, v := range rev.Spec.Container.Labels {
		c.Labels[k] = v
	}
	c.Labels[LabelService] = rev.Service
	c.Labels[LabelRevision] = strconv.Itoa(rev.Number)
	return c
}

// Recover settles the rollouts of this host that a previous daemon left
// in progress (it died or was stopped mid-way). If the new containers all
// run, were recorded serving (step 3) and the old ones are gone, the
// rollout had reached its end: it is
// finished (old containers left stopped are removed) and
// recorded as succeeded. Otherwise it is undone, as a failure is: the old
// containers serve again (a restarted registrar registers them running),
// the new ones leave the proxy and are removed, and it is recorded as
// failed. Nothing is left in a half state without a record of it.
func (s *Service) Recover(ctx context.Context) error {
	all, err := s.revisions(ctx)
	if err != nil {
		return err
	}
	// One service that cannot be settled does not keep the others from it.
	var errs []error
	for service, hist := range all {
		for _, rev := range hist {
			if rev.Outcome != OutcomeInProgress || rev.Host != s.host {
				continue
			}
			if err := s.claimAndRecover(ctx, service, rev.Number); err != nil {
				errs = append(errs, fmt.Errorf("%s revision %d: %w", service, rev.Number, err))
			}
		}
	}
	return errors.Join(errs...)
}

// claimAndRecover claims the service's deploy lock before it settles
// revision n, and reads the revision again under it: of two recoverers
// (two daemons of one host after a restart, or a daemon and a berth
// process) only the one holding the lock acts, and it acts only on a
// revision still in progress. A lock another holds is an error, so that
// Run tries again: the holder finishes, or, dead, its lock goes with its
// lease.
func (s *Service) claimAndRecover(ctx context.Context, service string, n int) error {
	unlock, err := s.lock(ctx, service)
	if err != nil {
		return err
	}
	defer unlock()
	s.mu.Lock()
	s.inFlight[service] = n
	s.mu.Unlock()
	kv, err := s.st.Get(ctx, records.DeploymentKey(s.prefix, service, n))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	rev, ok, err := s.decodeRevision(service, kv)
	if err != nil || !ok {
		return fmt.Errorf("its record no longer reads: %v", err)
	}
	if rev.Outcome != OutcomeInProgress {
		return nil // settled by another meanwhile
	}
	return s.recoverOne(ctx, service, rev)
}

func (s *Service) recoverOne(ctx context.Context, service string, rev Revision) error {
	cs, err := s.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var newC, oldC []runtime.Container
	for _, c := range cs {
		if c.Labels[LabelService] != service || c.Labels[LabelRevision] == "" {
			continue
		}
		if c.Labels[LabelRevision] == strconv.Itoa(rev.Number) {
			newC = append(newC, c)
		} else if c.Running() {
			oldC = append(oldC, c)
		}
	}
	runningNew := 0
	for _, c := range newC {
		if c.Running() {
			runningNew++
		}
	}
	log := s.log.With("service", service, "revision", rev.Number)
	ro := &rollout{s: s, rev: &rev, req: Request{Service: service, Spec: rev.Spec}, log: log,
		say: func(step, format string, args ...any) {
			log.Info("deploy (recovery): "+fmt.Sprintf(format, args...), "step", step)
		}}
	rev.Finished = time.Now()
	if len(oldC) == 0 && runningNew == rev.Spec.Replicas && !rev.Serving.IsZero() {
		rev.Outcome, rev.Reason = OutcomeSucceeded, "finished by the daemon after a restart interrupted it"
		ro.started = newC
		ro.stopOld(ctx)
	} else {
		vctx, stop := context.WithCancel(ctx)
		ro.view = watchRecords(vctx, s.st, records.ServicesPrefix(s.prefix)+service+"/", s.prefix, log)
		ro.started = newC
		ro.abort(ctx, errors.New("interrupted by a daemon restart"))
		stop()
		rev.Outcome, rev.Reason = OutcomeFailed, "interrupted by a daemon restart: its containers were removed and the previous ones serve on"
	}
	if err := s.save(ctx, &rev); err != nil {
		return err
	}
	log.Warn("deploy: settled a rollout a previous daemon left in progress", "outcome", rev.Outcome)
	return nil
}
