package dockergen

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dockergen/internal/selfid"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
)

// Generator renders docker-gen configurations from one Docker Engine: it
// is the runner (package runner) with a Source per container filter, and
// docker-gen's notifications as the runner's applied hook.
type Generator struct {
	rt       *docker.Runtime
	renderer *render.Renderer
	log      *slog.Logger
	confs    []config.Template
	jobs     map[string]*job // by template name
	sources  map[string]Filter
	self     string // the ID of the container berth runs in, if any
}

type job struct {
	conf   config.Template
	source string // the key of its Source: its filter
	notify notify
}

// Filters every configuration applies on top of its own container filter
// (docker-gen's -only-exposed, -only-published and -include-stopped).
type Filters struct {
	OnlyExposed, OnlyPublished, IncludeStopped bool
}

// New checks the configurations' templates and filters.
func New(rt *docker.Runtime, renderer *render.Renderer, log *slog.Logger, confs []config.Template, global Filters) (*Generator, error) {
	g := &Generator{rt: rt, renderer: renderer, log: log, self: selfid.Current(),
		jobs: map[string]*job{}, sources: map[string]Filter{}}
	var errs []error
	for _, c := range confs {
		c.Options.Dialect = dialect.DockerGen
		if c.DockerGen == nil {
			c.DockerGen = &config.DockerGenExtras{}
		}
		if c.Name == "" || g.jobs[c.Name] != nil {
			c.Name = c.Origin + ":" + c.Src // names must be unique in the runner
		}
		if _, err := dialect.Parse(c.Src, c.Options); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Origin, err))
			continue
		}
		j := &job{conf: c}
		var raw map[string][]string
		if x := c.DockerGen; x != nil {
			raw = x.ContainerFilter
		}
		f, err := ParseFilter(raw, global)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Origin, err))
			continue
		}
		j.source = f.key
		g.sources[f.key] = f
		if j.notify, err = newNotify(c.DockerGen); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Origin, err))
			continue
		}
		g.jobs[c.Name] = j
		g.confs = append(g.confs, c)
	}
	return g, errors.Join(errs...)
}

// Run renders every configuration once, then, if any of them watches or
// has an interval, keeps rendering until ctx ends; regenerate (SIGHUP in
// docker-gen) parses the templates again (which docker-gen does not do; a
// template that no longer parses keeps its previous version, with the
// error logged) and re-renders all of them. Without watch or interval it
// returns after the first render, with an error if a configuration failed.
// A failed render is retried with the runner's backoff while watching.
func (g *Generator) Run(ctx context.Context, regenerate <-chan struct{}) error {
	ongoing := false
	for _, c := range g.confs {
		ongoing = ongoing || c.DockerGen.Watch || c.DockerGen.Interval > 0
	}
	opts := []SourceOption{WithSourceLogger(g.log), withSelf(g.self)}
	if !ongoing {
		opts = append(opts, WithoutEvents())
	}
	r := runner.New(nil, g.renderer,
		runner.WithLogger(g.log),
		runner.WithSources(
			func(c config.Template) []string { return []string{g.jobs[c.Name].source} },
			func(key string) runner.Source { return NewSource(g.rt, g.sources[key], opts...) }),
		runner.WithTriggers(func(c config.Template) runner.Triggers {
			return runner.Triggers{IgnoreData: !c.DockerGen.Watch, Every: c.DockerGen.Interval}
		}),
		runner.WithApplied(g.applied),
		runner.WithRegenerate(regenerate))
	if ongoing {
		return r.Run(ctx, g.confs)
	}
	results, err := r.Once(ctx, g.confs)
	for i, res := range results {
		if res.Err != nil {
			g.log.Error("render failed; keeping the last good output", "config", g.confs[i].Origin, "err", res.Err)
		}
	}
	return err
}

// applied does what docker-gen does after a render: at an interval tick
// of a configuration that does not watch, its notify command runs even if
// the destination did not change; after a change (or such a tick), the
// containers it names and its notify filter selects are signalled.
func (g *Generator) applied(ctx context.Context, a runner.Applied) {
	j := g.jobs[a.Template.Name]
	always := a.Tick && !j.conf.DockerGen.Watch
	if always && !a.Result.Changed && j.conf.Spec.Reload != "" {
		nctx, cancel := context.WithTimeout(ctx, cmp.Or(j.conf.Spec.Timeout, render.DefaultTimeout))
		out, err := (render.Exec{}).Run(nctx, []string{"/bin/sh", "-c", j.conf.Spec.Reload})
		cancel()
		if err != nil {
			g.log.Error("notify failed", "config", j.conf.Origin, "err", err, "output", string(out))
		} else if j.conf.DockerGen.NotifyOutput {
			logOutput(g.log, j.conf.Spec.Reload, out)
		}
	}
	if a.Result.Changed || always {
		g.signal(ctx, j, g.rt.Cached())
	}
}

// input is the docker-gen context: the containers that pass filter, and
// the engine summary as $.Docker, with self (the container berth runs in)
// as $.Docker.CurrentContainerID.
func input(engine docker.Engine, containers []runtime.Container, filter Filter, self string) dialect.Input {
	in := dialect.Input{Containers: []records.Container{}, Docker: summary(engine, self)}
	for _, c := range containers {
		if filter.Match(c) {
			in.Containers = append(in.Containers, record(c))
		}
	}
	return in
}

// summary is the engine as $.Docker shows it.
func summary(engine docker.Engine, self string) records.Docker {
	return records.Docker{
		Name: engine.Name, NumContainers: engine.Containers, NumImages: engine.Images, Version: engine.Version,
		ApiVersion: engine.APIVersion, GoVersion: engine.GoVersion, OperatingSystem: engine.OperatingSystem,
		Architecture: engine.Architecture, CurrentContainerID: self,
	}
}

// record is a container as docker-gen shows it, where that differs from
// berth's general record:
//   - .IP, .Gateway, .IP6Global and .Addresses[].IP are Docker's legacy
//     top-level NetworkSettings fields, which describe the default "bridge"
//     network only: empty for a container on user-defined networks (their
//     addresses are in .Networks);
//   - .Addresses has one entry per exposed port, with its first host
//     binding (Docker lists 0.0.0.0 and :: bindings of one published port);
//   - an environment entry without "=" is a key with an empty value.
func record(c runtime.Container) records.Container {
	rc := records.FromRuntime(c)
	var bridge runtime.Network
	for _, n := range c.Networks {
		if n.Name == "bridge" {
			bridge = n
		}
	}
	rc.IP, rc.Gateway, rc.IP6Global = bridge.IP, bridge.Gateway, bridge.IPv6
	addrs := make([]records.Address, 0, len(rc.Addresses))
	for _, a := range rc.Addresses {
		if n := len(addrs); n > 0 && addrs[n-1].Port == a.Port && addrs[n-1].Proto == a.Proto {
			continue // a further binding of the same port
		}
		a.IP, a.IP6Global = bridge.IP, bridge.IPv6
		addrs = append(addrs, a)
	}
	rc.Addresses = addrs
	for _, kv := range c.Env {
		if !strings.Contains(kv, "=") {
			rc.Env[kv] = ""
		}
	}
	return rc
}

// RenderOnce renders one configuration's template from the engine's
// current containers and returns the output (docker-gen without a dest).
func RenderOnce(ctx context.Context, rt *docker.Runtime, conf config.Template, global Filters) ([]byte, error) {
	conf.Options.Dialect = dialect.DockerGen
	t, err := dialect.Parse(conf.Src, conf.Options)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", conf.Origin, err)
	}
	var raw map[string][]string
	if conf.DockerGen != nil {
		raw = conf.DockerGen.ContainerFilter
	}
	filter, err := ParseFilter(raw, global)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", conf.Origin, err)
	}
	containers, err := rt.List(ctx)
	if err != nil {
		return nil, err
	}
	engine, err := rt.Engine(ctx)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, input(engine, containers, filter, selfid.Current())); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
