package dockergen

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dockergen/internal/selfid"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/watcher"
)

// Generator renders docker-gen configurations from one Docker Engine.
type Generator struct {
	rt       *docker.Runtime
	renderer *render.Renderer
	log      *slog.Logger
	jobs     []*job
	self     string // the ID of the container berth runs in, if any
}

type job struct {
	conf   config.Template
	tmpl   *dialect.Template
	filter Filter
	every  time.Duration // docker-gen's interval: re-render and always notify
	watch  bool
	deb    *watcher.Debouncer
	notify notify
}

// Filters every configuration applies on top of its own container filter
// (docker-gen's -only-exposed, -only-published and -include-stopped).
type Filters struct {
	OnlyExposed, OnlyPublished, IncludeStopped bool
}

// New parses the configurations' templates and filters.
func New(rt *docker.Runtime, renderer *render.Renderer, log *slog.Logger, confs []config.Template, global Filters) (*Generator, error) {
	g := &Generator{rt: rt, renderer: renderer, log: log, self: selfid.Current()}
	var errs []error
	for _, c := range confs {
		c.Options.Dialect = dialect.DockerGen
		t, err := dialect.Parse(c.Src, c.Options)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Origin, err))
			continue
		}
		j := &job{conf: c, tmpl: t}
		var raw map[string][]string
		if x := c.DockerGen; x != nil {
			j.watch, j.every, raw = x.Watch, x.Interval, x.ContainerFilter
		}
		if j.filter, err = ParseFilter(raw, global); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Origin, err))
			continue
		}
		if j.notify, err = newNotify(c.DockerGen); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Origin, err))
			continue
		}
		g.jobs = append(g.jobs, j)
	}
	return g, errors.Join(errs...)
}

// Run renders every configuration once, then, if any of them watches or
// has an interval, keeps rendering until ctx ends; regenerate (SIGHUP in
// docker-gen) parses the templates again (which docker-gen does not do; a
// template that no longer parses keeps its previous version, with the
// error logged) and re-renders all of them. Without watch or interval it returns
// after the first render, with an error if a configuration failed.
func (g *Generator) Run(ctx context.Context, regenerate <-chan struct{}) error {
	ongoing := false
	for _, j := range g.jobs {
		ongoing = ongoing || j.watch || j.every > 0
	}
	var evs <-chan runtime.Event
	if ongoing {
		evs, _ = g.rt.Events(ctx) // subscribe before listing: nothing falls between
	}
	if _, err := g.rt.List(ctx); err != nil {
		return err
	}
	err := g.render(ctx, g.jobs, false)
	if !ongoing {
		return err
	}
	changed := make(chan *job, len(g.jobs))
	for _, j := range g.jobs {
		if j.watch {
			j.deb = watcher.NewDebouncer(ctx, j.conf.Wait, 0)
			go func() {
				for {
					select {
					case <-j.deb.C():
						changed <- j
					case <-ctx.Done():
						return
					}
				}
			}()
		}
		if j.every > 0 {
			go func() {
				t := time.NewTicker(j.every)
				defer t.Stop()
				for {
					select {
					case <-t.C:
						changed <- j
					case <-ctx.Done():
						return
					}
				}
			}()
		}
	}
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return nil // ctx ended
			}
			if ev.Type == runtime.EventKill {
				// A signal changes nothing a template sees (a die event
				// follows if it ends the container), and notifying
				// containers sends signals itself.
				continue
			}
			for _, j := range g.jobs {
				if j.deb != nil {
					j.deb.Trigger()
				}
			}
		case j := <-changed:
			g.render(ctx, []*job{j}, j.every > 0 && !j.watch)
		case <-regenerate:
			g.reparse()
			g.render(ctx, g.jobs, false)
		case <-ctx.Done():
			return nil
		}
	}
}

// reparse reads every job's template files again.
func (g *Generator) reparse() {
	for _, j := range g.jobs {
		t, err := dialect.Parse(j.conf.Src, j.conf.Options)
		if err != nil {
			g.log.Error("template does not parse; keeping its previous version", "config", j.conf.Origin, "err", err)
			continue
		}
		j.tmpl = t
	}
}

// render brings the jobs' destinations up to date in one cycle (so that
// identical notify commands run once). With always, a job whose output did
// not change still runs its notify command, as docker-gen's interval does.
func (g *Generator) render(ctx context.Context, jobs []*job, always bool) error {
	engine, err := g.rt.Engine(ctx)
	if err != nil {
		g.log.Warn("docker engine summary unavailable; $.Docker stays empty", "err", err)
	}
	containers := g.rt.Cached()
	rjobs := make([]render.Job, len(jobs))
	for i, j := range jobs {
		rjobs[i] = render.Job{Spec: j.conf.Spec, Source: render.Bind(j.tmpl, input(engine, containers, j.filter, g.self))}
	}
	results, err := g.renderer.Cycle(ctx, rjobs)
	for i, res := range results {
		j := jobs[i]
		if res.Err != nil {
			g.log.Error("render failed; keeping the last good output", "config", j.conf.Origin, "err", res.Err)
			continue
		}
		if always && !res.Changed && j.conf.Spec.Reload != "" {
			nctx, cancel := context.WithTimeout(ctx, cmp.Or(j.conf.Spec.Timeout, render.DefaultTimeout))
			out, err := (render.Exec{}).Run(nctx, []string{"/bin/sh", "-c", j.conf.Spec.Reload})
			cancel()
			if err != nil {
				g.log.Error("notify failed", "config", j.conf.Origin, "err", err, "output", string(out))
			} else if j.conf.DockerGen != nil && j.conf.DockerGen.NotifyOutput {
				logOutput(g.log, j.conf.Spec.Reload, out)
			}
		}
		if res.Changed || always {
			g.signal(ctx, j, containers)
		}
	}
	return err
}

// input is the docker-gen context: the containers that pass filter, and
// the engine summary as $.Docker, with self (the container berth runs in)
// as $.Docker.CurrentContainerID.
func input(engine docker.Engine, containers []runtime.Container, filter Filter, self string) dialect.Input {
	in := dialect.Input{Containers: []records.Container{}, Docker: records.Docker{
		Name: engine.Name, NumContainers: engine.Containers, NumImages: engine.Images, Version: engine.Version,
		ApiVersion: engine.APIVersion, GoVersion: engine.GoVersion, OperatingSystem: engine.OperatingSystem,
		Architecture: engine.Architecture, CurrentContainerID: self,
	}}
	for _, c := range containers {
		if filter.Match(c) {
			in.Containers = append(in.Containers, record(c))
		}
	}
	return in
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
	g, err := New(rt, nil, slog.Default(), []config.Template{conf}, global)
	if err != nil {
		return nil, err
	}
	containers, err := rt.List(ctx)
	if err != nil {
		return nil, err
	}
	engine, err := rt.Engine(ctx)
	if err != nil {
		return nil, err
	}
	j := g.jobs[0]
	var buf bytes.Buffer
	if err := j.tmpl.Execute(&buf, input(engine, containers, j.filter, g.self)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
