package dockercompat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/image"
)

// psFilters are the filter keys dockerd accepts for GET /containers/json.
var psFilters = []string{"ancestor", "before", "expose", "exited", "health", "id", "isolation", "is-task", "label", "name", "network", "publish", "since", "status", "volume"}

var validStates = []string{"created", "restarting", "running", "removing", "paused", "exited", "dead"}

func (s *Server) listContainers(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"), psFilters...)
	if err != nil {
		return err
	}
	for _, v := range f.values("status") {
		if !slices.Contains(validStates, v) {
			return badRequest("invalid filter 'status=%s'", v)
		}
	}
	for _, v := range f.values("health") {
		if !slices.Contains([]string{"starting", "healthy", "unhealthy", "none"}, v) {
			return badRequest("invalid filter 'health=%s'", v)
		}
	}
	limit, err := intValue(r, "limit", -1)
	if err != nil {
		return err
	}
	all := boolValue(r, "all") || f.has("status") || f.has("exited") || limit > 0
	cs, err := s.rt.List(r.Context())
	if err != nil {
		return err
	}
	byRef := func(ref string) (runtime.Container, error) {
		c, err := s.rt.Inspect(r.Context(), ref)
		if err != nil {
			return c, containerErr(ref, err)
		}
		return c, nil
	}
	var before, since time.Time
	for _, v := range f.values("before") {
		c, err := byRef(v)
		if err != nil {
			return err
		}
		before = c.Created
	}
	for _, v := range f.values("since") {
		c, err := byRef(v)
		if err != nil {
			return err
		}
		since = c.Created
	}
	var exposeR, publishR []portRange
	for _, v := range f.values("expose") {
		pr, err := parsePortRange(v)
		if err != nil {
			return err
		}
		exposeR = append(exposeR, pr)
	}
	for _, v := range f.values("publish") {
		pr, err := parsePortRange(v)
		if err != nil {
			return err
		}
		publishR = append(publishR, pr)
	}
	var imgs []image.Image
	if f.has("ancestor") {
		imgs = s.images()
	}
	now := time.Now()
	out := []container.Summary{}
	for _, c := range cs {
		if !all && c.State != runtime.StateRunning {
			continue
		}
		if !before.IsZero() && !c.Created.Before(before) || !since.IsZero() && !c.Created.After(since) {
			continue
		}
		if !matchContainer(f, c, exposeR, publishR, imgs) {
			continue
		}
		out = append(out, summary(c, now))
		if limit > 0 && len(out) == limit {
			break
		}
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) images() []image.Image {
	imgs, _ := s.rt.Images().List()
	return imgs
}

// matchContainer applies the ps filters (other than before/since) to c.
func matchContainer(f filters, c runtime.Container, exposeR, publishR []portRange, imgs []image.Image) bool {
	if !f.any("id", func(v string) bool { return strings.HasPrefix(c.ID, v) }) ||
		!f.any("name", func(v string) bool { return matchRegexp(v, "/"+c.Name) || matchRegexp(v, c.Name) }) ||
		!f.any("status", func(v string) bool { return v == string(c.State) }) ||
		!f.any("exited", func(v string) bool { return c.State == runtime.StateExited && v == strconv.Itoa(c.ExitCode) }) ||
		!f.any("health", func(v string) bool { return v == string(c.Health) || v == "none" && c.Health == "" }) ||
		!f.any("is-task", func(v string) bool { return v == "false" || v == "0" }) ||
		!f.any("isolation", func(v string) bool { return v == "default" }) ||
		!f.matchLabels("label", c.Labels) {
		return false
	}
	if !f.any("network", func(v string) bool {
		for _, n := range c.Networks {
			if n.Name == v || strings.HasPrefix(networkID(n.Name), v) {
				return true
			}
		}
		return c.NetworkMode == v
	}) {
		return false
	}
	if !f.any("volume", func(v string) bool {
		return slices.ContainsFunc(c.Mounts, func(m runtime.Mount) bool { return m.Source == v || m.Destination == v })
	}) {
		return false
	}
	if !f.any("ancestor", func(v string) bool { return ancestorMatch(v, c, imgs) }) {
		return false
	}
	anyPort := func(ranges []portRange, published bool) bool {
		if len(ranges) == 0 {
			return true
		}
		for _, p := range c.Ports {
			for _, pr := range ranges {
				if published && p.HostPort != 0 && pr.match(p.HostPort, p.Proto) || !published && pr.match(p.Port, p.Proto) {
					return true
				}
			}
		}
		return false
	}
	return anyPort(exposeR, false) && anyPort(publishR, true)
}

// ancestorMatch: the container's image is v (by name, normalized name or
// id prefix).
func ancestorMatch(v string, c runtime.Container, imgs []image.Image) bool {
	if v == c.Image || strings.HasPrefix(strings.TrimPrefix(c.ImageID, "sha256:"), strings.TrimPrefix(v, "sha256:")) && len(strings.TrimPrefix(v, "sha256:")) >= 4 {
		return true
	}
	n1, err1 := image.Normalize(v)
	n2, err2 := image.Normalize(c.Image)
	if err1 == nil && err2 == nil && n1 == n2 {
		return true
	}
	for _, img := range imgs {
		if img.ID == c.ImageID && err1 == nil && slices.Contains(img.RepoTags, n1) {
			return true
		}
	}
	return false
}

// inspectContainer gathers what inspect shows for ref.
func (s *Server) inspectContainer(ctx context.Context, ref string) (container.InspectResponse, error) {
	c, err := s.rt.Inspect(ctx, ref)
	if err != nil {
		return container.InspectResponse{}, containerErr(ref, err)
	}
	spec, err := s.rt.ContainerSpec(c.ID)
	if err != nil {
		return container.InspectResponse{}, containerErr(ref, err)
	}
	var ic imageConfig
	if img, err := s.rt.Images().Get(c.ImageID); err == nil {
		ic = imageConfig{Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd}
	} else {
		ic = imageConfig{Cmd: c.Cmd}
	}
	s.mu.Lock()
	autoRm, tty := s.autoRm[c.ID], s.tty[c.ID]
	var execIDs []string
	for id, e := range s.execs {
		if e.containerID == c.ID && e.running() {
			execIDs = append(execIDs, id)
		}
	}
	s.mu.Unlock()
	in := inspect(c, spec, ic, autoRm || spec.AutoRemove)
	in.Config.Tty = tty
	slices.Sort(execIDs)
	in.ExecIDs = execIDs
	return in, nil
}

func (s *Server) getContainer(w http.ResponseWriter, r *http.Request) error {
	in, err := s.inspectContainer(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if reqVersion(r).before("1.52") {
		api.WriteJSON(w, http.StatusOK, withLegacy(in))
		return nil
	}
	api.WriteJSON(w, http.StatusOK, in)
	return nil
}

// validName is dockerd's container name rule.
var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func (s *Server) createContainer(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("name")
	if name != "" && !validName.MatchString(name) {
		return badRequest("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	name = strings.TrimPrefix(name, "/")
	var req container.CreateRequest
	if err := decodeBody(r, &req, false); err != nil {
		return err
	}
	if req.Config == nil {
		return badRequest("config cannot be empty in order to create a container")
	}
	plan, err := specFromCreate(name, req)
	if err != nil {
		return err
	}
	spec, expose, warnings := plan.spec, plan.expose, plan.warnings
	if _, err := s.rt.Images().Get(spec.Image); err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			ref := spec.Image
			if n, nerr := image.Normalize(spec.Image); nerr == nil {
				ref = n
			}
			return errorf(http.StatusNotFound, "No such image: %s", ref)
		}
		return err
	}
	if name != "" {
		if old, err := s.rt.Inspect(r.Context(), name); err == nil && old.Name == name {
			return errorf(http.StatusConflict, "Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, old.ID)
		}
	}
	c, err := s.rt.Create(context.WithoutCancel(r.Context()), spec, expose...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if spec.AutoRemove {
		s.autoRm[c.ID] = true
	}
	if req.Config.Tty {
		s.tty[c.ID] = true
	}
	s.mu.Unlock()
	if warnings == nil {
		warnings = []string{}
	}
	api.WriteJSON(w, http.StatusCreated, container.CreateResponse{ID: c.ID, Warnings: warnings})
	return nil
}

// createPlan is what a create request maps onto: the runtime spec, the
// exposed ports that are not published, and the warnings for the client.
type createPlan struct {
	spec     runtime.Spec
	expose   []runtime.Port
	warnings []string
}

// specFromCreate maps a create request onto a runtime spec. Settings
// berth cannot honour are a 400 when ignoring them would change what runs
// (privileged, other network drivers, named volumes) and a warning when
// they are cosmetic. The parts are checked in a fixed order (config,
// restart, network, mounts, health check, ports), so the first bad one
// is the error the client sees.
func specFromCreate(name string, req container.CreateRequest) (createPlan, error) {
	cfg := req.Config
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	spec, warnings, err := specFromConfig(name, cfg, hc)
	if err != nil {
		return createPlan{}, err
	}
	if err := checkRestart(spec.Restart.Name, hc.AutoRemove); err != nil {
		return createPlan{}, err
	}
	spec.CPUs, spec.PidsLimit = resourcesFromHostConfig(hc)
	if spec.Network, err = networkFromMode(string(hc.NetworkMode)); err != nil {
		return createPlan{}, err
	}
	if spec.Volumes, err = mountsFromHostConfig(hc); err != nil {
		return createPlan{}, err
	}
	if spec.Health, err = healthFromConfig(cfg.Healthcheck); err != nil {
		return createPlan{}, err
	}
	publish, expose, portWarnings, err := portsFromCreate(cfg, hc)
	if err != nil {
		return createPlan{}, err
	}
	spec.Publish = publish
	spec.AutoRemove = hc.AutoRemove // the runtime removes it, also after a daemon restart
	return createPlan{spec: spec, expose: expose, warnings: append(warnings, portWarnings...)}, nil
}

// specFromConfig maps the container config (image, command, environment,
// labels, user) and the plain host-config fields onto a spec; it refuses
// a TTY with stdin and privileged containers, and warns of anonymous
// volumes and a TTY.
func specFromConfig(name string, cfg *container.Config, hc *container.HostConfig) (runtime.Spec, []string, error) {
	var warnings []string
	if cfg.Image == "" {
		return runtime.Spec{}, nil, badRequest("no image specified: the create request has an empty Config.Image")
	}
	spec := runtime.Spec{
		Name: name, Image: cfg.Image, Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env,
		Labels: cfg.Labels, WorkingDir: cfg.WorkingDir, User: cfg.User, Hostname: cfg.Hostname,
		StopSignal: cfg.StopSignal, ReadOnly: hc.ReadonlyRootfs, Memory: hc.Memory,
		Restart: runtime.RestartPolicy{Name: string(hc.RestartPolicy.Name), MaxRetries: hc.RestartPolicy.MaximumRetryCount},
	}
	if len(cfg.Volumes) > 0 {
		warnings = append(warnings, "berth has no volumes: anonymous volumes (-v /path, the image's VOLUME) are not created; bind a host path instead")
	}
	if cfg.Tty && cfg.OpenStdin {
		return runtime.Spec{}, nil, badRequest("berth containers have no TTY and no stdin: run without -it (-d works)")
	}
	if cfg.Tty {
		warnings = append(warnings, "berth runs containers without a TTY: the output is passed through unframed, as with one, but programs see no terminal")
	}
	if hc.Privileged {
		return runtime.Spec{}, nil, badRequest("berth does not run privileged containers")
	}
	return spec, warnings, nil
}

// checkRestart refuses an unknown restart policy, and auto-remove with
// a restart policy, as dockerd does.
func checkRestart(policy string, autoRemove bool) error {
	switch policy {
	case "", "no", "always", "unless-stopped", "on-failure":
	default:
		return badRequest("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", policy)
	}
	if autoRemove && policy != "" && policy != "no" {
		return badRequest("can't create 'AutoRemove' container with restart policy")
	}
	return nil
}

// resourcesFromHostConfig returns the CPU limit (from NanoCPUs, or from
// CPUQuota over CPUPeriod, 100ms by default) and the pids limit; zero is
// no limit.
func resourcesFromHostConfig(hc *container.HostConfig) (cpus float64, pids int64) {
	switch {
	case hc.NanoCPUs > 0:
		cpus = float64(hc.NanoCPUs) / 1e9
	case hc.CPUQuota > 0:
		period := hc.CPUPeriod
		if period <= 0 {
			period = 100000
		}
		cpus = float64(hc.CPUQuota) / float64(period)
	}
	if hc.PidsLimit != nil && *hc.PidsLimit > 0 {
		pids = *hc.PidsLimit
	}
	return cpus, pids
}

// networkFromMode maps a network mode onto a runtime network: bridge
// (the default), host or none; container: modes are a 400 and any other
// name is a network that does not exist.
func networkFromMode(mode string) (string, error) {
	switch mode {
	case "", "default", runtime.NetworkBridge:
		return runtime.NetworkBridge, nil
	case runtime.NetworkHost, runtime.NetworkNone:
		return mode, nil
	}
	if strings.HasPrefix(mode, "container:") {
		return "", badRequest("berth does not support network mode %q", mode)
	}
	return "", errorf(http.StatusNotFound, "network %s not found", mode)
}

// mountsFromHostConfig maps the binds, then the mounts, onto runtime
// mounts; berth binds host paths only.
func mountsFromHostConfig(hc *container.HostConfig) ([]runtime.Mount, error) {
	var mounts []runtime.Mount
	for _, b := range hc.Binds {
		m, err := runtime.ParseVolume(b)
		if err != nil {
			return nil, badRequest("invalid bind: %v", err)
		}
		if !strings.HasPrefix(m.Source, "/") {
			return nil, badRequest("invalid bind %q: berth supports host-path binds only (/host/path:/container/path[:ro|rw])", b)
		}
		mounts = append(mounts, m)
	}
	for _, m := range hc.Mounts {
		if m.Type != "bind" {
			return nil, badRequest("invalid mount of type %q: berth supports bind mounts only", m.Type)
		}
		mounts = append(mounts, runtime.Mount{Source: m.Source, Destination: m.Target, ReadOnly: m.ReadOnly})
	}
	return mounts, nil
}

// healthFromConfig maps a health check, with dockerd's defaults (30s
// interval and timeout, 3 retries); nil, or a NONE test, is none.
func healthFromConfig(h *container.HealthConfig) (*runtime.HealthCheck, error) {
	if h == nil || len(h.Test) == 0 || h.Test[0] == "NONE" {
		return nil, nil
	}
	hcheck := &runtime.HealthCheck{Interval: h.Interval, Timeout: h.Timeout, Retries: h.Retries, StartPeriod: h.StartPeriod}
	switch h.Test[0] {
	case "CMD":
		hcheck.Cmd = h.Test[1:]
	case "CMD-SHELL":
		hcheck.Cmd = []string{"/bin/sh", "-c", strings.Join(h.Test[1:], " ")}
	default:
		return nil, badRequest("invalid health check %q: the test must start with CMD, CMD-SHELL or NONE", h.Test)
	}
	if len(hcheck.Cmd) == 0 {
		return nil, badRequest("invalid health check: no command")
	}
	if hcheck.Interval == 0 {
		hcheck.Interval = 30 * time.Second
	}
	if hcheck.Timeout == 0 {
		hcheck.Timeout = 30 * time.Second
	}
	if hcheck.Retries == 0 {
		hcheck.Retries = 3
	}
	return hcheck, nil
}

// portsFromCreate maps the published ports (an empty host port gets a
// free one), then the exposed ones that are not published: those are
// published too with PublishAllPorts, else exposed only. Ports are taken
// in sorted order, so the result does not depend on map order.
func portsFromCreate(cfg *container.Config, hc *container.HostConfig) (publish, expose []runtime.Port, warnings []string, err error) {
	published := map[network.Port]bool{}
	for _, p := range sortedPorts(hc.PortBindings) {
		bindings := hc.PortBindings[p]
		if len(bindings) > 1 {
			warnings = append(warnings, fmt.Sprintf("berth publishes a container port once: only the first binding of %s is used", p))
		}
		if len(bindings) == 0 {
			continue
		}
		rp, err := publishPort(p, bindings[0])
		if err != nil {
			return nil, nil, nil, err
		}
		publish = append(publish, rp)
		published[p] = true
	}
	for _, p := range sortedPorts(cfg.ExposedPorts) {
		if published[p] {
			continue
		}
		if hc.PublishAllPorts {
			rp, err := publishPort(p, network.PortBinding{})
			if err != nil {
				return nil, nil, nil, err
			}
			publish = append(publish, rp)
			continue
		}
		expose = append(expose, runtime.Port{Port: p.Num(), Proto: string(p.Proto())})
	}
	return publish, expose, warnings, nil
}

// sortedPorts returns a port map's keys in string order.
func sortedPorts[V any](m map[network.Port]V) []network.Port {
	keys := make([]network.Port, 0, len(m))
	for p := range m {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b network.Port) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

// publishPort maps one port binding; an empty or zero host port gets a
// free port, as dockerd picks one.
func publishPort(p network.Port, b network.PortBinding) (runtime.Port, error) {
	proto := string(p.Proto())
	if proto != "tcp" && proto != "udp" {
		return runtime.Port{}, badRequest("invalid port %s: berth publishes tcp and udp ports only", p)
	}
	rp := runtime.Port{Port: p.Num(), Proto: proto}
	if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
		rp.HostIP = b.HostIP.String()
	}
	hp := b.HostPort
	if lo, _, ok := strings.Cut(hp, "-"); ok {
		hp = lo
	}
	if hp != "" && hp != "0" {
		n, err := strconv.ParseUint(hp, 10, 16)
		if err != nil || n == 0 {
			return rp, badRequest("invalid host port %q for %s", b.HostPort, p)
		}
		rp.HostPort = uint16(n)
		return rp, nil
	}
	free, err := freePort(rp.HostIP, proto)
	if err != nil {
		return rp, fmt.Errorf("pick a host port for %s: %w", p, err)
	}
	rp.HostPort = free
	return rp, nil
}

// freePort asks the kernel for a free port on ip.
func freePort(ip, proto string) (uint16, error) {
	hostport := net.JoinHostPort(ip, "0")
	if proto == "udp" {
		c, err := net.ListenPacket("udp", hostport)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
	}
	ln, err := net.Listen("tcp", hostport)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port), nil
}

// lookup finds a container for an operation, with dockerd's 404.
func (s *Server) lookup(r *http.Request) (runtime.Container, error) {
	ref := r.PathValue("id")
	c, err := s.rt.Inspect(r.Context(), ref)
	if err != nil {
		return c, containerErr(ref, err)
	}
	return c, nil
}

func (s *Server) startContainer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.lookup(r)
	if err != nil {
		return err
	}
	if c.State == runtime.StateRunning {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if err := s.rt.Start(context.WithoutCancel(r.Context()), c.ID); err != nil {
		s.startFailed(c, err)
		return containerErr(r.PathValue("id"), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// grace is the stop timeout: the t query parameter (-1: wait for ever),
// else 10 s.
func grace(r *http.Request) (time.Duration, error) {
	t, err := intValue(r, "t", 10)
	if err != nil {
		return 0, err
	}
	if t < 0 {
		return 100 * 365 * 24 * time.Hour, nil
	}
	return time.Duration(t) * time.Second, nil
}

// checkStopSignal refuses a stop signal other than the container's own:
// the runtime stops with the one it was created with.
func (s *Server) checkStopSignal(r *http.Request, c runtime.Container) error {
	sig := r.URL.Query().Get("signal")
	if sig == "" {
		return nil
	}
	want, err := runtime.ParseSignal(sig)
	if err != nil {
		return badRequest("%v", err)
	}
	spec, err := s.rt.ContainerSpec(c.ID)
	if err != nil {
		return containerErr(c.Name, err)
	}
	have := unix.SIGTERM
	if spec.StopSignal != "" {
		if h, err := runtime.ParseSignal(spec.StopSignal); err == nil {
			have = h
		}
	}
	if want != have {
		return badRequest("berth stops a container with the signal it was created with (%s): --signal %s is not supported", unix.SignalName(have), sig)
	}
	return nil
}

// stopRequest reads a stop or restart request: the container, its grace
// period (t), and a signal the runtime can stop it with.
func (s *Server) stopRequest(r *http.Request) (runtime.Container, time.Duration, error) {
	c, err := s.lookup(r)
	if err != nil {
		return runtime.Container{}, 0, err
	}
	g, err := grace(r)
	if err != nil {
		return runtime.Container{}, 0, err
	}
	return c, g, s.checkStopSignal(r, c)
}

func (s *Server) stopContainer(w http.ResponseWriter, r *http.Request) error {
	c, g, err := s.stopRequest(r)
	if err != nil {
		return err
	}
	if c.State != runtime.StateRunning && c.State != runtime.StateRestarting {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if err := s.rt.Stop(context.WithoutCancel(r.Context()), c.ID, g); err != nil {
		return containerErr(r.PathValue("id"), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) restartContainer(w http.ResponseWriter, r *http.Request) error {
	c, g, err := s.stopRequest(r)
	if err != nil {
		return err
	}
	if err := s.rt.Restart(context.WithoutCancel(r.Context()), c.ID, g); err != nil {
		return containerErr(r.PathValue("id"), err)
	}
	s.hub.publish(containerMessage(events.ActionRestart, c, nil, time.Now()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) killContainer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.lookup(r)
	if err != nil {
		return err
	}
	sig, err := runtime.ParseSignal(r.URL.Query().Get("signal"))
	if err != nil {
		return badRequest("%v", err)
	}
	if c.State != runtime.StateRunning {
		return errorf(http.StatusConflict, "cannot kill container: %s: container %s is not running", r.PathValue("id"), c.ID)
	}
	// As dockerd, a SIGKILL answers once the container is gone (up to 10s),
	// so a following inspect sees it exited.
	var sub *subscriber
	if sig == unix.SIGKILL {
		sub = s.hub.subscribe()
		defer s.hub.unsubscribe(sub)
	}
	if err := s.rt.Kill(context.WithoutCancel(r.Context()), c.ID, sig); err != nil {
		return containerErr(r.PathValue("id"), err)
	}
	if sub != nil {
		waitEvent(r.Context(), sub, c.ID, 10*time.Second, events.ActionDie)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) removeContainer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.lookup(r)
	if err != nil {
		return err
	}
	force := boolValue(r, "force")
	if c.State == runtime.StateRunning && !force {
		return errorf(http.StatusConflict, "cannot remove container \"/%s\": container is running: stop the container before removing or force remove", c.Name)
	}
	if boolValue(r, "link") {
		return badRequest("berth has no container links to remove")
	}
	var opts []runtime.RemoveOption
	if force {
		opts = append(opts, runtime.Force())
	}
	if err := s.rt.Remove(context.WithoutCancel(r.Context()), c.ID, opts...); err != nil {
		return containerErr(r.PathValue("id"), err)
	}
	s.mu.Lock()
	delete(s.autoRm, c.ID)
	delete(s.tty, c.ID)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// waitContainer answers when the container reaches the condition:
// not-running (default), next-exit or removed. The headers go out at
// once: docker run sends this before start and must not block on it.
func (s *Server) waitContainer(w http.ResponseWriter, r *http.Request) error {
	cond := r.URL.Query().Get("condition")
	switch cond {
	case "", "not-running", "next-exit", "removed":
	default:
		return badRequest("invalid condition: %q", cond)
	}
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	c, err := s.lookup(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush(w)
	done := func(code int) {
		_ = jsonLine(w, container.WaitResponse{StatusCode: int64(code)})
	}
	running := c.State == runtime.StateRunning || c.State == runtime.StateRestarting
	if (cond == "" || cond == "not-running") && !running {
		done(c.ExitCode)
		return nil
	}
	lastCode := c.ExitCode
	for {
		select {
		case <-r.Context().Done():
			return nil
		case m, ok := <-sub.ch:
			if !ok {
				return nil
			}
			if m.Type != events.ContainerEventType || m.Actor.ID != c.ID {
				continue
			}
			switch m.Action {
			case events.ActionDie:
				lastCode, _ = strconv.Atoi(m.Actor.Attributes["exitCode"])
				if cond != "removed" {
					done(lastCode)
					return nil
				}
			case events.ActionDestroy:
				done(lastCode)
				return nil
			}
		}
	}
}

// waitEvent waits for one of actions on container id, up to d.
func waitEvent(ctx context.Context, sub *subscriber, id string, d time.Duration, actions ...events.Action) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		case m, ok := <-sub.ch:
			if !ok {
				return false
			}
			if m.Type == events.ContainerEventType && m.Actor.ID == id && slices.Contains(actions, m.Action) {
				return true
			}
		}
	}
}
