package deploy

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
)

// Defaults of a rollout.
const (
	DefaultTimeout = 2 * time.Minute // to start the new containers, have them healthy and in the proxy
	DefaultGrace   = 10 * time.Second
	lockTTL        = 15 * time.Second
)

// Templates reports what the templates have applied; *runner.Runner
// implements it. A rollout waits until every template that reads a
// service's records has rendered, checked and reloaded the revision that
// added (or drained) them.
type Templates interface {
	Status(ctx context.Context) ([]runner.TemplateStatus, error)
}

// Drainer takes containers out of the proxies while they still run, the
// way the registrar drains a container that is about to stop.
type Drainer interface {
	// Drain marks the running containers' records draining.
	Drain(ctx context.Context, ids ...string) error
	// Undrain makes them serve again (a rollout cut short).
	Undrain(ctx context.Context, ids ...string) error
}

// ImageResolver finds an image before anything is started: the digest of
// ref, or an error wrapping runtime.ErrNotFound. Without one, the first
// container's start finds out (and nothing else is touched).
type ImageResolver interface {
	ResolveImage(ctx context.Context, ref string) (digest string, err error)
}

// Addresses reports how many more containers the runtime's network can
// give an address to; a rollout that needs more is refused before it
// starts anything.
type Addresses interface {
	FreeAddresses(ctx context.Context) (int, error)
}

// Service runs the rollouts of one host's services and keeps their
// history in the store.
type Service struct {
	st       store.Store
	rt       runtime.Runtime
	tmpl     Templates
	drainer  Drainer
	resolver ImageResolver
	addrs    Addresses
	prefix   string
	host     string
	drain    time.Duration
	grace    time.Duration
	poll     time.Duration
	keep     int // revisions kept per service
	log      *slog.Logger
	owner    string // this Service's identity in the locks it holds

	mu       sync.Mutex
	inFlight map[string]int // service → the revision being rolled out
}

// Option configures a Service.
type Option func(*Service)

// WithTemplates sets what the rollout asks whether the proxy has the new
// containers (without it: nothing is waited for after health).
func WithTemplates(t Templates) Option { return func(s *Service) { s.tmpl = t } }

// WithDrainer sets how old containers are taken out of the proxy before
// they stop (without it, stopping them drains them, as berth stop does).
func WithDrainer(d Drainer) Option { return func(s *Service) { s.drainer = d } }

// WithImageResolver sets how images are found before the rollout starts
// (default: the runtime, when it implements ImageResolver).
func WithImageResolver(r ImageResolver) Option { return func(s *Service) { s.resolver = r } }

// WithAddresses sets what counts the free addresses of the containers'
// network (without it: not checked; a start that finds none fails and is
// undone).
func WithAddresses(a Addresses) Option { return func(s *Service) { s.addrs = a } }

// WithHistory sets how many revisions of each service are kept (default
// DefaultHistory; 0 or less: all). The last one and the last succeeded
// one are always kept.
func WithHistory(n int) Option { return func(s *Service) { s.keep = n } }

// WithPrefix sets the key prefix (default records.DefaultPrefix).
func WithPrefix(p string) Option { return func(s *Service) { s.prefix = p } }

// WithHost names this host in the revisions (default: the host name).
func WithHost(h string) Option { return func(s *Service) { s.host = h } }

// WithDrain sets how long old containers stay draining, in the proxy's
// new configuration and still running, before they stop (the
// registrar's drain).
func WithDrain(d time.Duration) Option { return func(s *Service) { s.drain = d } }

// WithStopGrace sets how long a stopped container gets before it is
// killed (default DefaultGrace).
func WithStopGrace(d time.Duration) Option { return func(s *Service) { s.grace = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// New returns the deploy service over st (revisions, records) and rt
// (containers).
func New(st store.Store, rt runtime.Runtime, opts ...Option) *Service {
	s := &Service{st: st, rt: rt, prefix: records.DefaultPrefix, grace: DefaultGrace, poll: 25 * time.Millisecond, keep: DefaultHistory,
		log: slog.Default(), inFlight: map[string]int{}, owner: rand.Text()}
	if r, ok := rt.(ImageResolver); ok {
		s.resolver = r
	}
	for _, o := range opts {
		o(s)
	}
	if s.host == "" {
		s.host, _ = os.Hostname()
	}
	return s
}

// Request is one deploy.
type Request struct {
	Service string `json:"service"`
	Spec    Spec   `json:"spec"`
	// Timeout bounds starting the new containers, their health and their
	// arrival in the proxy (default DefaultTimeout).
	Timeout time.Duration `json:"timeout,omitempty"`
	// KeepOld stops the old containers without removing them.
	KeepOld bool `json:"keep_old,omitempty"`
	// MaxSurge starts the new containers this many at a time, each batch
	// healthy before the next starts (0: all at once).
	MaxSurge int `json:"max_surge,omitempty"`
	// Probe is an http:// URL of the proxy (http://127.0.0.1:80/): step 3
	// also waits until GETs of it, with the Host of the service's first
	// VIRTUAL_HOST, answer below 500 several times in a row on new
	// connections, so "in the proxy" means the proxy's reload has
	// finished, not only that its reload command returned (nginx -s
	// reload does before its new workers serve).
	Probe string `json:"probe,omitempty"`
}

// RollbackRequest is one rollback: To is the revision to deploy again
// (0: the last succeeded one before the current).
type RollbackRequest struct {
	Service  string        `json:"service"`
	To       int           `json:"to,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
	KeepOld  bool          `json:"keep_old,omitempty"`
	MaxSurge int           `json:"max_surge,omitempty"`
	Probe    string        `json:"probe,omitempty"`
}

// Progress is one step of a rollout, for the one who asked for it.
type Progress struct {
	Time    time.Time `json:"time"`
	Step    string    `json:"step"`
	Message string    `json:"message"`
}

// Steps of a rollout, in order.
const (
	StepStart   = "start"   // the new containers are started
	StepHealthy = "healthy" // each passes its health check (or accepts TCP)
	StepRouted  = "routed"  // each is in the proxy: both colours serve
	StepDrain   = "drain"   // the old ones are out of the proxy, still running
	StepStop    = "stop"    // the old ones are stopped (and removed)
	StepAbort   = "abort"   // the rollout failed: the new ones are removed
)

// ErrInFlight is wrapped by the error of a deploy refused because another
// of the same service is under way.
var ErrInFlight = runtime.Errorf(runtime.ErrConflict, "a deploy of this service is in flight")

// Deploy rolls the service out to req.Spec and returns its revision. A
// failure (an image that does not exist, a container that fails its
// health check or never reaches the proxy within the timeout, ctx ending)
// removes the new containers and leaves the old ones serving; the revision
// is recorded as failed with the reason, and returned with the error.
func (s *Service) Deploy(ctx context.Context, req Request, progress func(Progress)) (Revision, error) {
	if err := req.Spec.Validate(req.Service); err != nil {
		return Revision{}, err
	}
	if err := checkProbe(req.Service, req.Probe); err != nil {
		return Revision{}, err
	}
	if req.MaxSurge < 0 {
		return Revision{}, runtime.Errorf(runtime.ErrInvalid, "service %s: max surge %d: want 0 (all at once) or more", req.Service, req.MaxSurge)
	}
	return s.run(ctx, req, 0, progress)
}

// Rollback deploys an earlier succeeded revision again, by the image
// digest it recorded, with the same procedure as Deploy.
func (s *Service) Rollback(ctx context.Context, req RollbackRequest, progress func(Progress)) (Revision, error) {
	if err := records.CheckService(req.Service); err != nil {
		return Revision{}, runtime.Errorf(runtime.ErrInvalid, "service %q: %v", req.Service, err)
	}
	if err := checkProbe(req.Service, req.Probe); err != nil {
		return Revision{}, err
	}
	hist, err := s.history(ctx, req.Service)
	if err != nil {
		return Revision{}, err
	}
	target, err := rollbackTarget(req.Service, hist, req.To)
	if err != nil {
		return Revision{}, err
	}
	spec := target.Spec
	if target.Digest != "" {
		spec.Image = target.Digest
	}
	return s.run(ctx, Request{Service: req.Service, Spec: spec, Timeout: req.Timeout, KeepOld: req.KeepOld, MaxSurge: req.MaxSurge, Probe: req.Probe}, target.Number, progress)
}

// rollbackTarget picks the revision a rollback deploys: to, which must
// have succeeded, or else the last succeeded one before the current (the
// last succeeded), or, after an undeploy, the last succeeded.
func rollbackTarget(service string, hist []Revision, to int) (Revision, error) {
	if to > 0 {
		i := slices.IndexFunc(hist, func(r Revision) bool { return r.Number == to })
		if i < 0 {
			return Revision{}, runtime.Errorf(runtime.ErrNotFound, "service %s has no revision %d (berth history %s)", service, to, service)
		}
		if hist[i].Outcome != OutcomeSucceeded {
			return Revision{}, runtime.Errorf(runtime.ErrInvalid, "revision %d of %s %s: only a revision that succeeded can be deployed again", to, service, hist[i].Outcome)
		}
		return hist[i], nil
	}
	var ok []Revision
	for _, r := range hist {
		if r.Outcome == OutcomeSucceeded {
			ok = append(ok, r)
		}
	}
	if n := len(hist); n > 0 && hist[n-1].Outcome == OutcomeUndeployed && len(ok) > 0 {
		return ok[len(ok)-1], nil // undeployed: back to what ran before
	}
	if len(ok) < 2 {
		return Revision{}, runtime.Errorf(runtime.ErrNotFound, "service %s has no earlier succeeded revision to roll back to", service)
	}
	cur := ok[len(ok)-1]
	// The current one may itself be a rollback: go back past what it
	// rolled back from.
	for i := len(ok) - 2; i >= 0; i-- {
		if ok[i].Digest != cur.Digest || ok[i].Image != cur.Image {
			return ok[i], nil
		}
	}
	return ok[len(ok)-2], nil
}

// lock claims the service's rollout: in this process, and in the store,
// where a create-only put (store.Create) of a lock key bound to this
// daemon's lease (lockTTL) makes exactly one of several daemons or
// processes sharing the store win; the others are refused naming the
// holder. A holder that dies leaves no lock behind for longer than its
// lease: the key goes with it.
func (s *Service) lock(ctx context.Context, service string) (func(), error) {
	s.mu.Lock()
	if rev, busy := s.inFlight[service]; busy {
		s.mu.Unlock()
		switch rev {
		case restarting:
			return nil, fmt.Errorf("%w: service %s: its containers are being restarted; try again", ErrInFlight, service)
		case 0:
			return nil, fmt.Errorf("%w: service %s: another rollout of it is starting; wait for it or interrupt it", ErrInFlight, service)
		}
		return nil, fmt.Errorf("%w: service %s: revision %d is being rolled out; wait for it or interrupt it", ErrInFlight, service, rev)
	}
	s.inFlight[service] = 0
	s.mu.Unlock()
	unlock := func() {
		s.mu.Lock()
		delete(s.inFlight, service)
		s.mu.Unlock()
	}
	key := records.DeploymentLockKey(s.prefix, service)
	b, _ := json.Marshal(lockRecord{Host: s.host, Owner: s.owner, Since: time.Now()})
	if _, err := s.st.Txn(ctx, store.Create(key, b, store.WithTTL(lockTTL))); err != nil {
		unlock()
		if errors.Is(err, store.ErrExists) {
			return nil, s.heldBy(ctx, service, key)
		}
		return nil, fmt.Errorf("deploy lock of %s: %w", service, err)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		// Only our own lock: one whose lease ran out meanwhile (the store
		// was away longer than lockTTL) may be another's now.
		var l lockRecord
		if kv, err := s.st.Get(dctx, key); err == nil && json.Unmarshal(kv.Value, &l) == nil && l.Owner == s.owner {
			if _, err := s.st.Delete(dctx, key); err != nil {
				s.log.Warn("cannot release the deploy lock; it expires with the lease", "key", key, "err", err)
			}
		}
		unlock()
	}, nil
}

// heldBy is the refusal of a lock that another holds.
func (s *Service) heldBy(ctx context.Context, service, key string) error {
	var l lockRecord
	kv, err := s.st.Get(ctx, key)
	if err != nil || json.Unmarshal(kv.Value, &l) != nil {
		return fmt.Errorf("%w: service %s: another daemon holds its deploy lock %s", ErrInFlight, service, key)
	}
	who := "host " + l.Host
	if l.Host == s.host {
		who = "another berth process of this host"
	}
	return fmt.Errorf("%w: service %s: %s has been rolling it out since %s (a lock whose daemon died goes with its lease within %s)",
		ErrInFlight, service, who, l.Since.Format(time.RFC3339), lockTTL)
}

type lockRecord struct {
	Host  string    `json:"host"`
	Owner string    `json:"owner"` // the Service that holds it (one per daemon)
	Since time.Time `json:"since"`
}

// run is Deploy and Rollback after their checks: lock, resolve, record,
// roll out, record the outcome.
func (s *Service) run(ctx context.Context, req Request, rollbackTo int, progress func(Progress)) (Revision, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	unlock, err := s.lock(ctx, req.Service)
	if err != nil {
		return Revision{}, err
	}
	defer unlock()
	// An image that does not exist is refused before anything is touched.
	var digest string
	if s.resolver != nil {
		if digest, err = s.resolver.ResolveImage(ctx, req.Spec.Image); err != nil {
			return Revision{}, fmt.Errorf("service %s: image %s: %w", req.Service, req.Spec.Image, err)
		}
	}
	if err := s.checkAddresses(ctx, req); err != nil {
		return Revision{}, err
	}
	hist, err := s.history(ctx, req.Service)
	if err != nil {
		return Revision{}, err
	}
	rev := &Revision{Service: req.Service, Number: 1, Image: req.Spec.Image, Digest: digest, Spec: req.Spec,
		RollbackTo: rollbackTo, Host: s.host, Started: time.Now(), Outcome: OutcomeInProgress}
	if rollbackTo > 0 {
		// Read again under the lock: the record may be gone since.
		i := slices.IndexFunc(hist, func(r Revision) bool { return r.Number == rollbackTo })
		if i < 0 {
			return Revision{}, runtime.Errorf(runtime.ErrNotFound, "service %s: revision %d is no longer recorded", req.Service, rollbackTo)
		}
		rev.Image = hist[i].Image
	}
	if n := len(hist); n > 0 {
		rev.Number = hist[n-1].Number + 1
	}
	s.mu.Lock()
	s.inFlight[req.Service] = rev.Number
	s.mu.Unlock()
	if err := s.save(ctx, rev); err != nil {
		return Revision{}, err
	}
	log := s.log.With("service", req.Service, "revision", rev.Number)
	say := func(step, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		log.Info("deploy: "+msg, "step", step)
		progress(Progress{Time: time.Now(), Step: step, Message: msg})
	}
	ro := &rollout{s: s, rev: rev, req: req, say: say, log: log}
	err = ro.run(ctx)
	rev.Finished = time.Now()
	if err != nil {
		rev.Outcome, rev.Reason = OutcomeFailed, err.Error()
	} else {
		rev.Outcome = OutcomeSucceeded
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	s.saveRetrying(fctx, rev)
	s.prune(fctx, req.Service)
	if err != nil {
		return *rev, fmt.Errorf("deploy of %s revision %d failed (the previous containers serve on): %w", req.Service, rev.Number, err)
	}
	return *rev, nil
}

// checkAddresses refuses, before anything is touched, a rollout whose new
// containers the network cannot all give an address to: they run beside
// the old ones until they serve, however many at a time start.
func (s *Service) checkAddresses(ctx context.Context, req Request) error {
	if s.addrs == nil || (req.Spec.Container.Network != "" && req.Spec.Container.Network != runtime.NetworkBridge) {
		return nil
	}
	free, err := s.addrs.FreeAddresses(ctx)
	if err != nil {
		return fmt.Errorf("service %s: count the free addresses: %w", req.Service, err)
	}
	if free < req.Spec.Replicas {
		return runtime.Errorf(runtime.ErrConflict, "service %s: not enough addresses in the subnet for the surge: %d new container(s) run beside the old ones until they serve, %d address(es) free; nothing was started",
			req.Service, req.Spec.Replicas, free)
	}
	return nil
}

func timeoutOr(d time.Duration) time.Duration { return cmp.Or(d, DefaultTimeout) }
