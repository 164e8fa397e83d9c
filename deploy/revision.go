package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
)

// Outcome is how a revision's rollout ended.
type Outcome string

// Outcomes of a revision.
const (
	OutcomeInProgress Outcome = "in_progress" // its rollout runs (or was cut short by a daemon that died: see Service.Recover)
	OutcomeSucceeded  Outcome = "succeeded"   // its containers replaced the previous ones
	OutcomeFailed     Outcome = "failed"      // its containers were removed; the previous ones serve on
	OutcomeUndeployed Outcome = "undeployed"  // berth undeploy: the service's containers were drained, stopped and removed
)

// Revision is one deploy of a service, as recorded under
// <prefix>/deployments/<service>/<rev>.
type Revision struct {
	Service string `json:"service"`
	Number  int    `json:"revision"`
	// Image is the reference as given; Digest the image (config digest)
	// its containers ran, which a rollback deploys.
	Image  string `json:"image"`
	Digest string `json:"digest,omitempty"`
	Spec   Spec   `json:"spec"`
	// Undeploy marks a revision that removed the service (berth
	// undeploy); its Spec is the last deployed one's, for the record.
	Undeploy bool `json:"undeploy,omitempty"`
	// RollbackTo is the revision a rollback deployed again (0: none).
	RollbackTo int       `json:"rollback_to,omitempty"`
	Host       string    `json:"host,omitempty"`
	Started    time.Time `json:"started"`
	Serving    time.Time `json:"serving,omitzero"`  // every new container in the proxy
	Finished   time.Time `json:"finished,omitzero"` // the old ones gone (or the new ones, on failure)
	Outcome    Outcome   `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`
	// Containers are the names of the containers it started.
	Containers []string `json:"containers,omitempty"`
}

// history reads every revision of service, oldest first.
func (s *Service) history(ctx context.Context, service string) ([]Revision, error) {
	dir := records.DeploymentsPrefix(s.prefix, service)
	kvs, _, err := s.st.List(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("deployments of %s: %w", service, err)
	}
	var out []Revision
	for _, kv := range kvs {
		r, ok, err := s.decodeRevision(service, kv)
		if err != nil {
			s.log.Warn("deployment record left out", "key", kv.Key, "err", err)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// decodeRevision reads the record kv of one of service's revisions; ok is
// false for a key that is not a revision's, and for a record to leave out
// (err says why). A record is store
// input like any other: its number is the key's (the body's could make
// the next revision's key unlistable, or overwrite history), it must name
// service, and its spec must pass Validate (replicas: 1e9 would have the
// replica keeper build a billion-entry map every second).
func (s *Service) decodeRevision(service string, kv store.KV) (Revision, bool, error) {
	n, ok := records.ParseDeploymentKey(records.DeploymentsPrefix(s.prefix, service), kv.Key)
	if !ok {
		return Revision{}, false, nil
	}
	var r Revision
	err := json.Unmarshal(kv.Value, &r)
	switch {
	case err != nil:
	case r.Service != service:
		err = fmt.Errorf("it names service %q", r.Service)
	case r.Number != n:
		err = fmt.Errorf("it says revision %d", r.Number)
	default:
		err = r.Spec.Validate(service)
	}
	if err != nil {
		return Revision{}, false, err
	}
	return r, true, nil
}

// History returns every revision of service, oldest first; a service
// never deployed has none (not an error).
func (s *Service) History(ctx context.Context, service string) ([]Revision, error) {
	if err := records.CheckService(service); err != nil {
		return nil, runtime.Errorf(runtime.ErrInvalid, "service %q: %v", service, err)
	}
	return s.history(ctx, service)
}

// save writes rev's record.
func (s *Service) save(ctx context.Context, rev *Revision) error {
	b, err := json.Marshal(rev)
	if err != nil {
		return err
	}
	if _, err := s.st.Put(ctx, records.DeploymentKey(s.prefix, rev.Service, rev.Number), b); err != nil {
		return fmt.Errorf("record revision %d of %s: %w", rev.Number, rev.Service, err)
	}
	return nil
}

// saveRetrying writes rev's final record, retrying while the store is
// unavailable (a rollout's outcome is never left unrecorded while the
// daemon runs) until ctx ends.
func (s *Service) saveRetrying(ctx context.Context, rev *Revision) {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := s.save(ctx, rev)
		if err == nil || errors.Is(err, store.ErrClosed) {
			return
		}
		s.log.Warn("cannot record the deployment's outcome; retrying", "service", rev.Service, "revision", rev.Number, "err", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
	}
}

// DefaultHistory is how many revisions of a service are kept by default.
const DefaultHistory = 20

// prune deletes the oldest revisions of service beyond the last
// s.keep, never the last one, the last succeeded one (what the keeper
// runs and a rollback starts from) or one in progress. Their numbers are
// not reused: the next revision numbers from the last kept.
func (s *Service) prune(ctx context.Context, service string) {
	if s.keep <= 0 {
		return
	}
	hist, err := s.history(ctx, service)
	if err != nil || len(hist) <= s.keep {
		return
	}
	lastOK := -1
	for i, r := range hist {
		if r.Outcome == OutcomeSucceeded {
			lastOK = i
		}
	}
	excess := len(hist) - s.keep
	for i := 0; i < len(hist)-1 && excess > 0; i++ {
		if i == lastOK || hist[i].Outcome == OutcomeInProgress {
			continue
		}
		if _, err := s.st.Delete(ctx, records.DeploymentKey(s.prefix, service, hist[i].Number)); err != nil {
			s.log.Warn("deploy: cannot prune an old revision", "service", service, "revision", hist[i].Number, "err", err)
			return
		}
		excess--
	}
}
