package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// StepRemove is the last step of an undeploy: the containers are removed.
const StepRemove = "remove"

// Undeploy removes a deployed service: under the service's deploy lock
// it drains its running containers (out of the proxy while they still
// run), waits the drain, stops and removes every container of the
// service's revisions, and records a revision with outcome undeployed,
// after which the replica keeper no longer keeps it. berth deploy brings
// it back. A service never deployed is runtime.ErrNotFound.
func (s *Service) Undeploy(ctx context.Context, service string, progress func(Progress)) (Revision, error) {
	if err := records.CheckService(service); err != nil {
		return Revision{}, runtime.Errorf(runtime.ErrInvalid, "service %q: %v", service, err)
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	unlock, err := s.lock(ctx, service)
	if err != nil {
		return Revision{}, err
	}
	defer unlock()
	hist, err := s.history(ctx, service)
	if err != nil {
		return Revision{}, err
	}
	if len(hist) == 0 {
		return Revision{}, runtime.Errorf(runtime.ErrNotFound, "service %s was never deployed (berth history %s)", service, service)
	}
	last := hist[len(hist)-1]
	rev := &Revision{Service: service, Number: last.Number + 1, Image: last.Image, Digest: last.Digest, Spec: last.Spec,
		Undeploy: true, Host: s.host, Started: time.Now(), Outcome: OutcomeInProgress}
	s.mu.Lock()
	s.inFlight[service] = rev.Number
	s.mu.Unlock()
	cs, err := s.rt.List(ctx)
	if err != nil {
		return Revision{}, fmt.Errorf("list containers: %w", err)
	}
	if err := s.save(ctx, rev); err != nil {
		return Revision{}, err
	}
	log := s.log.With("service", service, "revision", rev.Number)
	ro := &rollout{s: s, rev: rev, req: Request{Service: service, Spec: last.Spec}, log: log,
		say: func(step, format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			log.Info("undeploy: "+msg, "step", step)
			progress(Progress{Time: time.Now(), Step: step, Message: msg})
		}}
	for _, c := range cs {
		if c.Labels[LabelService] == service && c.Labels[LabelRevision] != "" && c.Running() {
			ro.old = append(ro.old, c)
		}
	}
	vctx, stopView := context.WithCancel(context.WithoutCancel(ctx))
	defer stopView()
	ro.view = watchRecords(vctx, s.st, records.ServicesPrefix(s.prefix)+service+"/", s.prefix, log)
	err = ro.drainOld(ctx)
	if err == nil {
		// stopOld stops the running ones and removes every stopped
		// container of the service's revisions, kept ones included.
		ro.stopOld(context.WithoutCancel(ctx))
		ro.say(StepRemove, "service %s undeployed: %d container(s) drained, stopped and removed", service, len(ro.old))
	} else if ro.drained {
		// Cut short (Ctrl-C): the containers serve again, as before.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if uerr := s.drainer.Undrain(uctx, ids(ro.old)...); uerr != nil {
			log.Error("undeploy: cannot return the containers to service", "err", uerr)
		}
		cancel()
	}
	rev.Finished = time.Now()
	if err != nil {
		rev.Outcome, rev.Reason = OutcomeFailed, "undeploy: "+err.Error()
	} else {
		rev.Outcome = OutcomeUndeployed
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	s.saveRetrying(fctx, rev)
	s.prune(fctx, service)
	if err != nil {
		return *rev, fmt.Errorf("undeploy of %s failed (its containers serve on): %w", service, err)
	}
	return *rev, nil
}
