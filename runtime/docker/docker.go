package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/runtime"
)

// Config says how to reach the Docker Engine. Zero values follow the docker
// CLI: DOCKER_HOST (default unix:///var/run/docker.sock), DOCKER_TLS_VERIFY
// and DOCKER_CERT_PATH.
type Config struct {
	Host                      string // unix:///path or tcp://host:port
	CAFile, CertFile, KeyFile string // TLS to a tcp:// host
	DialTimeout               time.Duration
	Logger                    *slog.Logger
}

// Runtime follows one Docker Engine. It is safe for concurrent use.
type Runtime struct {
	cli  *client.Client
	host string
	log  *slog.Logger

	mu       sync.Mutex
	cache    map[string]runtime.Container // last snapshot of every container seen
	internal map[string]bool              // network ID → internal (fixed at creation)
	version  *Engine                      // the version part of Engine, asked once per connection

	calls atomic.Int64 // API requests sent, for figures and tests
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to the Docker Engine and checks, within the dial timeout,
// that it answers.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	log := cmp.Or(cfg.Logger, slog.Default())
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		for _, f := range []string{cfg.CAFile, cfg.CertFile, cfg.KeyFile} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("docker TLS: %w", err)
			}
		}
		opts = append(opts, client.WithTLSClientConfig(cfg.CAFile, cfg.CertFile, cfg.KeyFile))
	}
	r := &Runtime{log: log, cache: map[string]runtime.Container{}, internal: map[string]bool{}}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	r.cli, r.host = cli, cli.DaemonHost()
	pctx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.DialTimeout, 5*time.Second))
	defer cancel()
	r.calls.Add(1)
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
			return nil, fmt.Errorf("docker at %s: %w (the socket needs read and write access: run as root or as a member of the socket's group)", r.host, err)
		}
		return nil, fmt.Errorf("docker at %s: %w", r.host, err)
	}
	return r, nil
}

// Host is the endpoint the Runtime talks to.
func (r *Runtime) Host() string { return r.host }

// Close releases the client.
func (r *Runtime) Close() error { return r.cli.Close() }

// APICalls returns how many requests the Runtime has sent to Docker (an
// event stream counts once per connection).
func (r *Runtime) APICalls() int64 { return r.calls.Load() }

// Inspect implements runtime.Runtime.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	r.calls.Add(1)
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return runtime.Container{}, runtime.Errorf(runtime.ErrNotFound, "no such docker container: %s", id)
		}
		return runtime.Container{}, fmt.Errorf("docker at %s: inspect %s: %w", r.host, id, err)
	}
	c := fromInspect(res.Container)
	r.markInternal(ctx, &c, res.Container.NetworkSettings)
	r.mu.Lock()
	r.cache[c.ID] = c
	r.mu.Unlock()
	return c, nil
}

// markInternal sets Internal on the container's networks. Whether a
// network is internal is fixed when it is created, so each network (by ID)
// is inspected once, the first time a container on it is seen.
func (r *Runtime) markInternal(ctx context.Context, c *runtime.Container, ns *container.NetworkSettings) {
	if ns == nil {
		return
	}
	for i, n := range c.Networks {
		ep := ns.Networks[n.Name]
		if ep == nil || ep.NetworkID == "" {
			continue
		}
		r.mu.Lock()
		internal, ok := r.internal[ep.NetworkID]
		r.mu.Unlock()
		if !ok {
			r.calls.Add(1)
			res, err := r.cli.NetworkInspect(ctx, ep.NetworkID, client.NetworkInspectOptions{})
			if err != nil {
				r.log.Warn("docker network inspect failed; taking it as not internal", "network", n.Name, "container", c.Name, "err", err)
				continue
			}
			internal = res.Network.Internal
			r.mu.Lock()
			r.internal[ep.NetworkID] = internal
			r.mu.Unlock()
		}
		c.Networks[i].Internal = internal
	}
}

// List implements runtime.Runtime: every container, running or not.
func (r *Runtime) List(ctx context.Context) ([]runtime.Container, error) {
	r.calls.Add(1)
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("docker at %s: list: %w", r.host, err)
	}
	out := make([]runtime.Container, 0, len(res.Items))
	seen := map[string]bool{}
	for _, s := range res.Items {
		c, err := r.Inspect(ctx, s.ID)
		if errors.Is(err, runtime.ErrNotFound) {
			continue // removed between the listing and the inspection
		}
		if err != nil {
			return nil, err
		}
		seen[c.ID] = true
		out = append(out, c)
	}
	r.mu.Lock()
	for id := range r.cache {
		if !seen[id] {
			delete(r.cache, id)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b runtime.Container) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// eventFilters are the Docker events the Runtime follows: container
// lifecycle, health, and network attachments (which change addresses).
func eventFilters() client.Filters {
	return make(client.Filters).
		Add("type", string(events.ContainerEventType), string(events.NetworkEventType)).
		Add("event", "create", "start", "restart", "kill", "die", "stop", "destroy", "health_status", "rename", "connect", "disconnect")
}

// Events implements runtime.Runtime.
func (r *Runtime) Events(ctx context.Context) (<-chan runtime.Event, <-chan error) {
	out := make(chan runtime.Event, 64)
	errc := make(chan error)
	go func() {
		defer close(errc)
		defer close(out)
		emit := func(ev runtime.Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		var since time.Time
		bo := backoff.New(100*time.Millisecond, 10*time.Second)
		for attempt := 0; ctx.Err() == nil; attempt++ {
			sctx, cancel := context.WithCancel(ctx)
			opts := client.EventsListOptions{Filters: eventFilters()}
			if !since.IsZero() {
				opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
			}
			r.calls.Add(1)
			stream := r.cli.Events(sctx, opts)
			// Subscribed; after a reconnection, catch up from a full listing
			// (events older than the daemon's buffer are gone).
			if attempt > 0 {
				r.mu.Lock()
				r.version = nil // the engine may have been upgraded while away
				r.mu.Unlock()
				if err := r.resync(ctx, emit); err != nil {
					cancel()
					d := bo.Next()
					r.log.Warn("docker resync failed; retrying", "host", r.host, "err", err, "in", d)
					if !backoff.Sleep(ctx, d) {
						return
					}
					continue
				}
				r.log.Info("docker event stream re-established", "host", r.host)
			}
			err := r.follow(sctx, stream, &since, emit, bo.Reset)
			cancel()
			if ctx.Err() != nil {
				return
			}
			d := bo.Next()
			r.log.Warn("docker event stream broken; reconnecting", "host", r.host, "err", err, "in", d)
			if !backoff.Sleep(ctx, d) {
				return
			}
		}
	}()
	return out, errc
}

// follow handles the events of one stream until it ends.
func (r *Runtime) follow(ctx context.Context, stream client.EventsResult, since *time.Time, emit func(runtime.Event) bool, healthy func()) error {
	for {
		select {
		case msg := <-stream.Messages:
			healthy()
			if t := eventTime(msg); t.After(*since) {
				*since = t
			}
			if ev, ok := r.handle(ctx, msg); ok && !emit(ev) {
				return ctx.Err()
			}
		case err := <-stream.Err:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func eventTime(m events.Message) time.Time {
	if m.TimeNano != 0 {
		return time.Unix(0, m.TimeNano)
	}
	return time.Unix(m.Time, 0)
}

// handle turns one Docker event into a berth event, inspecting only the
// container it names.
func (r *Runtime) handle(ctx context.Context, m events.Message) (runtime.Event, bool) {
	id := m.Actor.ID
	typ := runtime.EventType("")
	switch {
	case m.Type == events.NetworkEventType:
		id = m.Actor.Attributes["container"]
		typ = runtime.EventUpdate
	case m.Action == "create":
		typ = runtime.EventCreate
	case m.Action == "start" || m.Action == "restart":
		typ = runtime.EventStart
	case m.Action == "die":
		typ = runtime.EventDie
	case m.Action == "stop":
		typ = runtime.EventStop
	case m.Action == "kill":
		typ = runtime.EventKill
	case m.Action == "destroy":
		typ = runtime.EventDestroy
	case m.Action == "rename":
		typ = runtime.EventUpdate
	case strings.HasPrefix(string(m.Action), "health_status"):
		typ = runtime.EventHealthStatus
	default:
		return runtime.Event{}, false
	}
	if id == "" {
		return runtime.Event{}, false
	}
	ev := runtime.Event{Type: typ, Time: eventTime(m)}
	if typ == runtime.EventKill {
		// Nothing about the container changed yet: report the cached one
		// without asking the engine.
		r.mu.Lock()
		c, ok := r.cache[id]
		r.mu.Unlock()
		if !ok {
			return runtime.Event{}, false
		}
		ev.Container, ev.Signal = c, signalName(m.Actor.Attributes["signal"])
		return ev, true
	}
	if typ == runtime.EventDestroy {
		r.mu.Lock()
		c, ok := r.cache[id]
		delete(r.cache, id)
		r.mu.Unlock()
		if !ok {
			c = runtime.Container{ID: id, Name: m.Actor.Attributes["name"]}
		}
		c.State = runtime.StateRemoving
		ev.Container = c
		return ev, true
	}
	c, err := r.Inspect(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) {
		// Gone already (a replayed event, or a fast create-and-remove): say
		// so if berth had seen it, else there is nothing to report.
		return r.handle(ctx, events.Message{Type: events.ContainerEventType, Action: "destroy", Actor: events.Actor{ID: id}, TimeNano: m.TimeNano})
	}
	if err != nil {
		r.log.Warn("docker inspect after event failed", "container", id, "event", m.Action, "err", err)
		return runtime.Event{}, false
	}
	ev.Container = c
	return ev, true
}

// signalName turns the number in a Docker kill event into a name
// ("15" → "SIGTERM"); anything else is returned as it is.
func signalName(s string) string {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		if name := unix.SignalName(syscall.Signal(n)); name != "" {
			return name
		}
	}
	return s
}

// resync lists every container and reports what changed since the cache
// was last current: containers that appeared or changed, and containers
// that vanished.
func (r *Runtime) resync(ctx context.Context, emit func(runtime.Event) bool) error {
	r.mu.Lock()
	before := maps.Clone(r.cache)
	r.mu.Unlock()
	now, err := r.List(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range now {
		seen[c.ID] = true
		old, ok := before[c.ID]
		if ok && old.State == c.State && old.Health == c.Health && reflect.DeepEqual(old.Networks, c.Networks) && old.Name == c.Name {
			continue
		}
		typ := runtime.EventUpdate
		switch {
		case !ok && c.State == runtime.StateCreated:
			typ = runtime.EventCreate
		case c.Running() && (!ok || !old.Running()):
			typ = runtime.EventStart
		case !c.Running() && ok && old.Running():
			typ = runtime.EventDie
		case ok && old.Health != c.Health:
			typ = runtime.EventHealthStatus
		}
		if !emit(runtime.Event{Type: typ, Time: time.Now(), Container: c}) {
			return ctx.Err()
		}
	}
	for id, c := range before {
		if !seen[id] {
			c.State = runtime.StateRemoving
			if !emit(runtime.Event{Type: runtime.EventDestroy, Time: time.Now(), Container: c}) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// Run implements runtime.Runtime: create and start a container.
func (r *Runtime) Run(ctx context.Context, spec runtime.Spec) (runtime.Container, error) {
	cfg, hc, err := toCreate(spec)
	if err != nil {
		return runtime.Container{}, err
	}
	r.calls.Add(2) // create and start
	res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, Name: spec.Name})
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return runtime.Container{}, fmt.Errorf("docker: create %s: %w: %w", spec.Name, runtime.ErrConflict, err)
		}
		if cerrdefs.IsNotFound(err) {
			return runtime.Container{}, fmt.Errorf("docker: create: %w: %w", runtime.ErrNotFound, err)
		}
		return runtime.Container{}, fmt.Errorf("docker at %s: create: %w", r.host, err)
	}
	if _, err := r.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		r.cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
		return runtime.Container{}, fmt.Errorf("docker at %s: start %s: %w", r.host, spec.Name, err)
	}
	return r.Inspect(ctx, res.ID)
}

// Stop implements runtime.Runtime.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	secs := int(grace.Round(time.Second) / time.Second)
	r.calls.Add(1)
	if _, err := r.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return runtime.Errorf(runtime.ErrNotFound, "no such docker container: %s", id)
		}
		return fmt.Errorf("docker at %s: stop %s: %w", r.host, id, err)
	}
	return nil
}

// Remove implements runtime.Runtime.
func (r *Runtime) Remove(ctx context.Context, id string, opts ...runtime.RemoveOption) error {
	o := runtime.ApplyRemoveOptions(opts)
	r.calls.Add(1)
	if _, err := r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: o.Force}); err != nil {
		switch {
		case cerrdefs.IsNotFound(err):
			return runtime.Errorf(runtime.ErrNotFound, "no such docker container: %s", id)
		case cerrdefs.IsConflict(err):
			return fmt.Errorf("docker container %s: %w: %w", id, runtime.ErrConflict, err)
		}
		return fmt.Errorf("docker at %s: remove %s: %w", r.host, id, err)
	}
	return nil
}

// toCreate maps a berth Spec onto Docker's create request.
func toCreate(s runtime.Spec) (*container.Config, *container.HostConfig, error) {
	cfg := &container.Config{
		Image: s.Image, Cmd: s.Cmd, Entrypoint: s.Entrypoint, Env: s.Env, Labels: s.Labels,
		WorkingDir: s.WorkingDir, User: s.User, Hostname: s.Hostname, StopSignal: s.StopSignal,
		ExposedPorts: network.PortSet{},
	}
	hc := &container.HostConfig{
		NetworkMode:    container.NetworkMode(s.Network),
		ReadonlyRootfs: s.ReadOnly,
		AutoRemove:     s.AutoRemove,
		PortBindings:   network.PortMap{},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyMode(s.Restart.Name), MaximumRetryCount: s.Restart.MaxRetries},
	}
	hc.Memory, hc.NanoCPUs = s.Memory, int64(s.CPUs*1e9)
	if s.PidsLimit > 0 {
		hc.PidsLimit = &s.PidsLimit
	}
	for _, m := range s.Volumes {
		b := m.Source + ":" + m.Destination
		if m.ReadOnly {
			b += ":ro"
		}
		hc.Binds = append(hc.Binds, b)
	}
	for _, p := range s.Publish {
		port, ok := network.PortFrom(p.Port, network.IPProtocol(cmp.Or(p.Proto, "tcp")))
		if !ok {
			return nil, nil, runtime.Errorf(runtime.ErrInvalid, "publish %d/%s: not a port and protocol Docker can publish", p.Port, p.Proto)
		}
		cfg.ExposedPorts[port] = struct{}{}
		b := network.PortBinding{HostPort: strconv.Itoa(int(p.HostPort))}
		if p.HostIP != "" {
			ip, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return nil, nil, runtime.Errorf(runtime.ErrInvalid, "publish host IP %q: not an IP address", p.HostIP)
			}
			b.HostIP = ip
		}
		hc.PortBindings[port] = append(hc.PortBindings[port], b)
	}
	if h := s.Health; h != nil {
		cfg.Healthcheck = &container.HealthConfig{
			Test: append([]string{"CMD"}, h.Cmd...), Interval: h.Interval, Timeout: h.Timeout,
			Retries: h.Retries, StartPeriod: h.StartPeriod,
		}
	}
	return cfg, hc, nil
}

// Engine describes the Docker Engine: what docker-gen shows as $.Docker.
type Engine struct {
	Name, Version, APIVersion, GoVersion, OperatingSystem, Architecture string
	Containers, Images                                                  int
}

// Engine asks the engine for its summary (one API call) and, the first
// time and again after each reconnection of the event stream, for its
// version (docker-gen asks for the version once at start).
func (r *Runtime) Engine(ctx context.Context) (Engine, error) {
	r.mu.Lock()
	ver := r.version
	r.mu.Unlock()
	if ver == nil {
		r.calls.Add(1)
		v, err := r.cli.ServerVersion(ctx, client.ServerVersionOptions{})
		if err != nil {
			return Engine{}, fmt.Errorf("docker at %s: version: %w", r.host, err)
		}
		ver = &Engine{Version: v.Version, APIVersion: v.APIVersion}
		for _, c := range v.Components {
			if c.Name == "Engine" {
				if g, ok := c.Details["GoVersion"]; ok {
					ver.GoVersion = g
				}
			}
		}
		r.mu.Lock()
		r.version = ver
		r.mu.Unlock()
	}
	r.calls.Add(1)
	info, err := r.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return Engine{}, fmt.Errorf("docker at %s: info: %w", r.host, err)
	}
	e := *ver
	e.Name, e.OperatingSystem, e.Architecture = info.Info.Name, info.Info.OperatingSystem, info.Info.Architecture
	e.Containers, e.Images = info.Info.Containers, info.Info.Images
	return e, nil
}

// Cached returns the containers as the Runtime last saw them (from List,
// Inspect and events), without asking Docker, sorted by name.
func (r *Runtime) Cached() []runtime.Container {
	r.mu.Lock()
	out := slices.Collect(maps.Values(r.cache))
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b runtime.Container) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Signal sends a signal to a running container, as docker kill -s does
// (POST /containers/{id}/kill?signal=...). id may be a name; signal is a
// number ("1") or a name ("SIGHUP", "HUP").
func (r *Runtime) Signal(ctx context.Context, id, signal string) error {
	r.calls.Add(1)
	if _, err := r.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal}); err != nil {
		switch {
		case cerrdefs.IsNotFound(err):
			return runtime.Errorf(runtime.ErrNotFound, "no such docker container: %s", id)
		case cerrdefs.IsConflict(err): // not running
			return fmt.Errorf("docker container %s: signal %s: %w: %w", id, signal, runtime.ErrConflict, err)
		}
		return fmt.Errorf("docker at %s: signal %s to %s: %w", r.host, signal, id, err)
	}
	return nil
}

// Restart stops a container (its stop signal, then SIGKILL after grace)
// and starts it again, as docker restart -t does.
func (r *Runtime) Restart(ctx context.Context, id string, grace time.Duration) error {
	secs := int(grace.Round(time.Second) / time.Second)
	r.calls.Add(1)
	if _, err := r.cli.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: &secs}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return runtime.Errorf(runtime.ErrNotFound, "no such docker container: %s", id)
		}
		return fmt.Errorf("docker at %s: restart %s: %w", r.host, id, err)
	}
	return nil
}
