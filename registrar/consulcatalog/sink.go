package consulcatalog

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
)

// Defaults and bounds of the checks.
const (
	// DefaultCheckTTL is the TTL of the checks berth renews; they are
	// renewed every third of it.
	DefaultCheckTTL = 30 * time.Second
	// MinCheckTTL bounds WithCheckTTL.
	MinCheckTTL = 3 * time.Second
	// DefaultDeregisterAfter is how long the "berth" check of a dead
	// daemon stays critical before Consul removes the service.
	DefaultDeregisterAfter = time.Minute
	// MinDeregisterAfter is Consul's minimum.
	MinDeregisterAfter = time.Minute
)

// Meta keys berth writes on every service it registers.
const (
	MetaHost          = "berth-host"
	MetaContainer     = "berth-container"
	MetaContainerName = "berth-container-name"
	MetaImage         = "berth-image"
	MetaPort          = "berth-port"
	MetaProto         = "berth-proto"
	// MetaDef is the hash of the definition: equal, it is not registered
	// again.
	MetaDef = "berth-def"
)

// Consul's limits on service meta.
const (
	maxMetaPairs    = 64
	maxMetaKeyLen   = 128
	maxMetaValueLen = 512
)

var metaKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Option configures a Sink.
type Option func(*Sink)

// WithLogger sets the logger (default slog.Default).
func WithLogger(l *slog.Logger) Option { return func(s *Sink) { s.log = l } }

// WithCheckTTL sets the TTL of the checks berth renews (default
// DefaultCheckTTL, at least MinCheckTTL).
func WithCheckTTL(d time.Duration) Option { return func(s *Sink) { s.ttl = d } }

// WithDeregisterAfter sets the DeregisterCriticalServiceAfter of the
// "berth" check (default DefaultDeregisterAfter, at least
// MinDeregisterAfter).
func WithDeregisterAfter(d time.Duration) Option { return func(s *Sink) { s.deregAfter = d } }

// ServiceID is the ID of the service berth registers for a container's
// port: prefixed with berth and the host, so that only this host's
// registrar ever removes it.
func ServiceID(host, container string, port int, proto string) string {
	id := "berth:" + host + ":" + container + ":" + strconv.Itoa(port)
	if proto == "udp" {
		id += ":udp"
	}
	return id
}

// Stats is what a Sink reports for metrics.
type Stats struct {
	Services int  // services registered on the agent
	Refused  int  // containers with a service Consul refused
	Failing  bool // the agent is unreachable (retrying)
	// While Failing: since when, and the last error.
	FailingSince time.Time
	Err          error
}

// Sink registers a host's containers in the local Consul agent's catalog
// (a registrar.Sink). Set and Replace only record what is wanted; Run
// applies it and renews the TTL checks until its context ends. A Sink
// whose Run ends leaves its services registered: a daemon that restarts
// within the window takes them over, otherwise Consul removes them.
type Sink struct {
	agent      *api.Agent
	host       string
	log        *slog.Logger
	ttl        time.Duration
	deregAfter time.Duration

	kick chan struct{}

	mu          sync.Mutex
	want        map[string]*service // service id → wanted
	byContainer map[string][]string // container id → its service ids
	pending     map[string]bool     // service ids changed since the last apply
	full        bool                // a full sync is due
	refused     map[string]string   // container id → why Consul refused a service of it
	warned      map[string]string   // container id → the problems last logged
	syncErr     error               // the last failed sync's, while failing
	failSince   time.Time           // when the sync started failing

	// Run's own.
	applied map[string]string // service id → definition hash on the agent
	maint   map[string]bool   // service id → in maintenance on the agent
	pushed  map[string]string // check id → status last set

	services atomic.Int64
	failing  atomic.Bool
}

var _ registrar.Sink = (*Sink)(nil)

// service is one wanted registration.
type service struct {
	container, name string // container id and name, for reports
	reg             *api.AgentServiceRegistration
	hash            string
	health          string // the container-health check's status ("": no such check)
	healthOutput    string
	maint           bool
	labelChecks     int // checks from SERVICE_CHECK_* (the last ones of reg.Checks)
}

// New returns a sink registering host's containers through client's agent.
func New(client *api.Client, host string, opts ...Option) (*Sink, error) {
	s := &Sink{
		agent: client.Agent(), host: host,
		ttl: DefaultCheckTTL, deregAfter: DefaultDeregisterAfter,
		kick:        make(chan struct{}, 1),
		want:        map[string]*service{},
		byContainer: map[string][]string{},
		pending:     map[string]bool{},
		refused:     map[string]string{},
		warned:      map[string]string{},
		applied:     map[string]string{},
		maint:       map[string]bool{},
		pushed:      map[string]string{},
	}
	for _, o := range opts {
		o(s)
	}
	s.log = cmp.Or(s.log, slog.Default()).With("catalog", "consul", "host", host)
	switch {
	case !records.ValidSegment(host):
		return nil, fmt.Errorf("consulcatalog: host name %q", host)
	case s.ttl < MinCheckTTL:
		return nil, fmt.Errorf("consulcatalog: check TTL %s is below %s", s.ttl, MinCheckTTL)
	case s.deregAfter < MinDeregisterAfter:
		return nil, fmt.Errorf("consulcatalog: deregister_after %s is below Consul's minimum, %s", s.deregAfter, MinDeregisterAfter)
	}
	return s, nil
}

// Set implements registrar.Sink.
func (s *Sink) Set(id string, regs []registrar.Registration) {
	s.mu.Lock()
	for _, sid := range s.byContainer[id] {
		delete(s.want, sid)
		s.pending[sid] = true
	}
	delete(s.byContainer, id)
	s.addLocked(id, regs)
	s.mu.Unlock()
	s.wake()
}

// Replace implements registrar.Sink.
func (s *Sink) Replace(all map[string][]registrar.Registration) {
	s.mu.Lock()
	s.want, s.byContainer = map[string]*service{}, map[string][]string{}
	for id, regs := range all {
		s.addLocked(id, regs)
	}
	for _, m := range []map[string]string{s.refused, s.warned} {
		for id := range m {
			if _, ok := all[id]; !ok {
				delete(m, id)
			}
		}
	}
	s.full = true
	s.mu.Unlock()
	s.wake()
}

func (s *Sink) addLocked(id string, regs []registrar.Registration) {
	var problems []string
	for _, r := range regs {
		sv, p := s.define(r)
		problems = append(problems, p...)
		sid := sv.reg.ID
		s.want[sid] = sv
		s.pending[sid] = true
		s.byContainer[id] = append(s.byContainer[id], sid)
	}
	if len(regs) == 0 {
		delete(s.warned, id)
		delete(s.refused, id)
		return
	}
	if msg := strings.Join(problems, "; "); msg != "" && s.warned[id] != msg {
		s.warned[id] = msg
		s.log.Warn("container metadata left out of its Consul service meta", "container", regs[0].ContainerName, "id", records.Truncate(id), "problems", msg)
	}
}

func (s *Sink) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Refused returns the containers (by id) with a service Consul refused,
// and why. Safe from any goroutine.
func (s *Sink) Refused() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.refused)
}

// Stats reports the sink's counts. Safe from any goroutine.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	st := Stats{Refused: len(s.refused), FailingSince: s.failSince, Err: s.syncErr}
	s.mu.Unlock()
	st.Services, st.Failing = int(s.services.Load()), s.failing.Load()
	return st
}

// checkStatus maps a container's health to a check status ("": it has no
// health check).
func checkStatus(h records.Health) string {
	switch h {
	case records.HealthHealthy:
		return api.HealthPassing
	case records.HealthStarting:
		return api.HealthWarning
	case records.HealthNone, "":
		return ""
	}
	return api.HealthCritical
}

// define is the agent registration of r, deterministic (its hash does not
// depend on map order or check statuses), and the meta left out.
func (s *Sink) define(r registrar.Registration) (*service, []string) {
	sid := ServiceID(s.host, r.Container, r.Port, r.Proto)
	meta := map[string]string{
		MetaHost: s.host, MetaContainer: r.Container, MetaPort: strconv.Itoa(r.Port), MetaProto: r.Proto,
	}
	var problems []string
	for k, v := range map[string]string{MetaContainerName: r.ContainerName, MetaImage: r.Image} {
		switch {
		case v == "":
		case len(v) > maxMetaValueLen:
			problems = append(problems, fmt.Sprintf("meta %s: value longer than %d bytes", k, maxMetaValueLen))
		default:
			meta[k] = v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Attrs)) {
		v := r.Attrs[k]
		switch {
		case len(k) > maxMetaKeyLen || !metaKey.MatchString(k):
			problems = append(problems, fmt.Sprintf("SERVICE_%s: a meta key is 1 to %d of [A-Za-z0-9_-]", strings.ToUpper(records.Truncate(k)), maxMetaKeyLen))
		case strings.HasPrefix(k, "consul-") || strings.HasPrefix(k, "berth-"):
			problems = append(problems, fmt.Sprintf("SERVICE_%s: the meta key prefix is reserved", strings.ToUpper(k)))
		case len(v) > maxMetaValueLen:
			problems = append(problems, fmt.Sprintf("SERVICE_%s: value longer than %d bytes", strings.ToUpper(k), maxMetaValueLen))
		case len(meta)+1 >= maxMetaPairs: // one left for MetaDef
			problems = append(problems, fmt.Sprintf("SERVICE_%s: more than %d meta pairs", strings.ToUpper(k), maxMetaPairs))
		default:
			meta[k] = v
		}
	}
	reg := &api.AgentServiceRegistration{
		ID: sid, Name: r.Service, Tags: slices.Clone(r.Tags), Port: r.HostPort, Address: r.Address, Meta: meta,
	}
	reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
		CheckID: sid + ":berth", Name: "berth registrar",
		Notes: "renewed by the berth daemon of " + s.host + "; critical when it stops renewing",
		TTL:   s.ttl.String(), DeregisterCriticalServiceAfter: s.deregAfter.String(),
	})
	sv := &service{container: r.Container, name: r.ContainerName, reg: reg, maint: r.Draining}
	if st := checkStatus(r.Health); st != "" {
		sv.health, sv.healthOutput = st, "container health: "+string(r.Health)
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID: sid + ":health", Name: "container health",
			Notes: "the container's health check, as berth sees it", TTL: s.ttl.String(),
		})
	}
	for _, c := range r.Checks {
		ck := &api.AgentServiceCheck{
			CheckID: sid + ":" + c.Kind, Name: c.Kind + " " + c.Target, Interval: c.Interval.String(),
		}
		if c.Timeout > 0 {
			ck.Timeout = c.Timeout.String()
		}
		if c.Kind == "tcp" {
			ck.TCP = c.Target
		} else {
			ck.HTTP = c.Target
		}
		reg.Checks = append(reg.Checks, ck)
		sv.labelChecks++
	}
	b, _ := json.Marshal(reg) // maps marshal sorted: deterministic
	sum := sha256.Sum256(b)
	sv.hash = hex.EncodeToString(sum[:8])
	meta[MetaDef] = sv.hash
	return sv, problems
}

// Run applies what Set and Replace asked for and renews the TTL checks
// until ctx ends. An unreachable agent is retried with a backoff; nothing
// is removed meanwhile, and a full sync follows when it answers again.
// Run returns nil when ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	bo := backoff.New(250*time.Millisecond, 15*time.Second)
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	defer s.flush()
	for {
		if err := s.apply(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.mu.Lock()
			s.syncErr = err
			if s.failSince.IsZero() {
				s.failSince = time.Now()
			}
			s.mu.Unlock()
			if !s.failing.Swap(true) {
				s.log.Warn("consul catalog sync failed; services stay as they are, retrying with a backoff", "err", err)
			}
			d := bo.Next()
			s.log.Debug("consul sync failed", "err", err, "in", d)
			if !backoff.Sleep(ctx, d) {
				return nil
			}
			continue
		}
		s.mu.Lock()
		s.syncErr, s.failSince = nil, time.Time{}
		s.mu.Unlock()
		if s.failing.Swap(false) {
			s.log.Info("consul agent reachable again; services synced")
		}
		bo.Reset()
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-tick.C:
			if err := s.renew(ctx); err != nil && ctx.Err() == nil {
				s.log.Debug("renewing checks failed; syncing", "err", err)
				s.mu.Lock()
				s.full = true
				s.mu.Unlock()
			}
		}
	}
}

// flush applies, briefly, what changed just before Run's context ended
// (the deregistrations of containers stopped at shutdown); a full sync is
// left to the next daemon.
func (s *Sink) flush() {
	s.mu.Lock()
	n := len(s.pending)
	s.full = false
	s.mu.Unlock()
	if n == 0 || s.failing.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	_ = s.apply(ctx)
}

// flushTimeout bounds flush.
const flushTimeout = 2 * time.Second

// apply makes the agent hold what is wanted: everything after Replace or a
// failure, else what changed.
func (s *Sink) apply(ctx context.Context) error {
	s.mu.Lock()
	full, pending := s.full, s.pending
	s.full, s.pending = false, map[string]bool{}
	want := maps.Clone(s.want)
	s.mu.Unlock()
	var err error
	if full {
		err = s.syncAll(ctx, want)
	} else {
		for _, sid := range slices.Sorted(maps.Keys(pending)) {
			if err = s.syncOne(ctx, sid, want[sid], false); err != nil {
				break
			}
		}
	}
	if err != nil {
		s.mu.Lock()
		s.full = true // the retry lists the agent and repairs everything
		s.mu.Unlock()
	}
	s.services.Store(int64(len(s.applied)))
	return err
}

// ours reports whether an agent service is one this host registered.
func (s *Sink) ours(svc *api.AgentService) bool {
	return strings.HasPrefix(svc.ID, "berth:"+s.host+":") && svc.Meta[MetaHost] == s.host
}

// syncAll lists the agent's services and checks, removes this host's that
// are not wanted, registers what is missing or different, and renews every
// TTL check at once (a daemon taking over from a previous one).
func (s *Sink) syncAll(ctx context.Context, want map[string]*service) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	svcs, err := s.agent.ServicesWithFilterOpts("", q)
	if err != nil {
		return fmt.Errorf("list the agent's services: %w", explain(err, "service:read", ""))
	}
	checks, err := s.agent.ChecksWithFilterOpts("", q)
	if err != nil {
		return fmt.Errorf("list the agent's checks: %w", explain(err, "service:read", ""))
	}
	s.applied, s.maint, s.pushed = map[string]string{}, map[string]bool{}, map[string]string{}
	for id, svc := range svcs {
		if s.ours(svc) {
			s.applied[id] = svc.Meta[MetaDef]
		}
	}
	for id, ck := range checks {
		if _, ok := s.applied[ck.ServiceID]; !ok {
			continue
		}
		if strings.HasPrefix(id, "_service_maintenance:") {
			s.maint[ck.ServiceID] = true
			continue
		}
		s.pushed[id] = ck.Status
	}
	for _, sid := range slices.Sorted(maps.Keys(s.applied)) {
		if _, ok := want[sid]; !ok {
			if err := s.syncOne(ctx, sid, nil, true); err != nil {
				return err
			}
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(want)) {
		if err := s.syncOne(ctx, sid, want[sid], true); err != nil {
			return err
		}
	}
	return nil
}

// syncOne makes the agent's service sid match sv (nil: removed). A
// refusal is reported and leaves that service out; an error means the
// agent could not be reached. renew sets the TTL checks even when their
// status is unchanged.
func (s *Sink) syncOne(ctx context.Context, sid string, sv *service, renew bool) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if sv == nil {
		if _, ok := s.applied[sid]; !ok {
			return nil
		}
		if err := s.agent.ServiceDeregisterOpts(sid, q); err != nil && !notFound(err) {
			if refusal(err) {
				s.log.Error("consul refused to deregister a service of this host", "service_id", sid, "err", explain(err, "service:write", sid))
				return nil
			}
			return fmt.Errorf("deregister %s: %w", sid, err)
		}
		delete(s.applied, sid)
		delete(s.maint, sid)
		s.log.Info("deregistered from the consul catalog", "service_id", sid)
		return nil
	}
	if s.applied[sid] != sv.hash {
		if err := s.register(ctx, sv); err != nil {
			return err
		}
		if s.applied[sid] != sv.hash {
			return nil // refused
		}
		renew = false // registered with the statuses set
	}
	if sv.maint != s.maint[sid] {
		var err error
		if sv.maint {
			err = s.agent.EnableServiceMaintenanceOpts(sid, "berth: the container is stopping (draining)", q)
		} else {
			err = s.agent.DisableServiceMaintenanceOpts(sid, q)
		}
		if err != nil {
			if !refusal(err) {
				return fmt.Errorf("maintenance of %s: %w", sid, err)
			}
			s.refuse(sv, explain(err, "service:write", sv.reg.Name))
		} else {
			s.maint[sid] = sv.maint
		}
	}
	return s.setTTL(ctx, sv, renew)
}

// register registers sv with its checks at their current status (passing
// for berth's, the container's health for its own, what the agent shows
// for the others, else critical), so that registering never makes a
// check flap. A definition Consul rejects because of its label checks is
// registered again without them.
func (s *Sink) register(ctx context.Context, sv *service) error {
	reg := *sv.reg
	reg.Checks = make(api.AgentServiceChecks, len(sv.reg.Checks))
	for i, c := range sv.reg.Checks {
		cc := *c
		switch {
		case strings.HasSuffix(c.CheckID, ":berth"):
			cc.Status = api.HealthPassing
		case strings.HasSuffix(c.CheckID, ":health"):
			cc.Status = sv.health
		default:
			cc.Status = cmp.Or(s.pushed[c.CheckID], api.HealthCritical)
		}
		reg.Checks[i] = &cc
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	err := s.agent.ServiceRegisterOpts(&reg, opts)
	if err != nil && sv.labelChecks > 0 && badRequest(err) {
		s.log.Warn("consul rejected the checks of a container's labels; registering its service without them", "container", sv.name, "service", reg.Name, "err", err)
		reg.Checks = reg.Checks[:len(reg.Checks)-sv.labelChecks]
		err = s.agent.ServiceRegisterOpts(&reg, opts)
	}
	if err != nil {
		if !refusal(err) {
			return fmt.Errorf("register %s: %w", reg.ID, err)
		}
		s.refuse(sv, explain(err, "service:write", reg.Name))
		return nil
	}
	s.applied[reg.ID] = sv.hash
	s.maint[reg.ID] = false // a registration replaces the checks, maintenance's too
	for _, c := range reg.Checks {
		s.pushed[c.CheckID] = c.Status
	}
	s.mu.Lock()
	delete(s.refused, sv.container)
	s.mu.Unlock()
	s.log.Info("registered in the consul catalog", "service", reg.Name, "service_id", reg.ID, "container", sv.name)
	return nil
}

// setTTL sets sv's TTL checks: the container-health one when its status
// changed, both when renew is set.
func (s *Sink) setTTL(ctx context.Context, sv *service, renew bool) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	sid := sv.reg.ID
	type ttl struct{ id, status, output string }
	ttls := []ttl{{sid + ":berth", api.HealthPassing, "renewed by berth on " + s.host}}
	if sv.health != "" {
		ttls = append(ttls, ttl{sid + ":health", sv.health, sv.healthOutput})
	}
	for _, t := range ttls {
		if !renew && s.pushed[t.id] == t.status {
			continue
		}
		if err := s.agent.UpdateTTLOpts(t.id, t.output, t.status, q); err != nil {
			if refusal(err) {
				s.refuse(sv, explain(err, "service:write", sv.reg.Name))
				continue
			}
			return fmt.Errorf("update check %s: %w", t.id, err) // unreachable, or the agent lost it
		}
		s.pushed[t.id] = t.status
	}
	return nil
}

// renew sets every applied service's TTL checks.
func (s *Sink) renew(ctx context.Context) error {
	s.mu.Lock()
	want := maps.Clone(s.want)
	s.mu.Unlock()
	for _, sid := range slices.Sorted(maps.Keys(want)) {
		sv := want[sid]
		if s.applied[sid] != sv.hash {
			continue
		}
		if err := s.setTTL(ctx, sv, true); err != nil {
			return err
		}
	}
	return nil
}

// refuse reports a service Consul refused, once per container and reason.
func (s *Sink) refuse(sv *service, err error) {
	msg := err.Error()
	s.mu.Lock()
	old := s.refused[sv.container]
	s.refused[sv.container] = msg
	s.mu.Unlock()
	if old != msg {
		s.log.Error("consul refused a container's service; it is not in the catalog (the others are)", "container", sv.name, "id", records.Truncate(sv.container), "service", sv.reg.Name, "err", msg)
	}
}

func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// refusal reports whether err is Consul refusing the request (as opposed
// to not answering): permission denied, or a definition it rejects.
func refusal(err error) bool {
	c := statusCode(err)
	return c == 400 || c == 403
}

func badRequest(err error) bool { return statusCode(err) == 400 }

func notFound(err error) bool { return statusCode(err) == 404 }

// explain names the ACL permission a 403 lacked.
func explain(err error, permission, on string) error {
	if statusCode(err) != 403 {
		return err
	}
	if strings.Contains(err.Error(), "ACL not found") {
		return fmt.Errorf("the ACL token is not one Consul knows (check token_file): %w", err)
	}
	if on != "" {
		return fmt.Errorf("the ACL token lacks %s on %q: %w", permission, on, err)
	}
	return fmt.Errorf("the ACL token lacks %s: %w", permission, err)
}
