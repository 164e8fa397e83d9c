package embedded

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/berthd/berth/runtime"
)

// What the Docker-compatible API (package api/dockercompat) needs beyond
// runtime.Runtime: Docker's create-then-start, and the spec a container
// was created from (inspect shows it as Config and HostConfig).

// Create makes a container without starting it, as docker create does:
// its record, directory and network attachment exist and a create event
// goes out; Start runs it. expose adds ports the container exposes
// without publishing them (docker's --expose; the spec only has published
// ones), each with its port number and protocol. On any error nothing is
// left.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec, expose ...runtime.Port) (runtime.Container, error) {
	for _, p := range expose {
		if p.Port == 0 || p.Proto != "tcp" && p.Proto != "udp" && p.Proto != "sctp" {
			return runtime.Container{}, runtime.Errorf(runtime.ErrInvalid, "expose %d/%s: want a port 1-65535 and tcp, udp or sctp", p.Port, p.Proto)
		}
	}
	c, err := r.create(ctx, spec)
	if err != nil {
		return runtime.Container{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(expose) > 0 {
		have := map[string]bool{}
		for _, p := range c.rec.C.Ports {
			have[portKey(p)] = true
		}
		for _, p := range expose {
			if !have[portKey(p)] {
				have[portKey(p)] = true
				c.rec.C.Ports = append(c.rec.C.Ports, runtime.Port{Port: p.Port, Proto: p.Proto})
			}
		}
		slices.SortFunc(c.rec.C.Ports, func(a, b runtime.Port) int {
			if a.Port != b.Port {
				return int(a.Port) - int(b.Port)
			}
			return strings.Compare(a.Proto, b.Proto)
		})
		if err := r.persist(c); err != nil {
			r.log.Error("persist container", "id", c.rec.C.ID, "err", err)
		}
	}
	return snapshot(c), nil
}

// ContainerSpec returns the spec a container (by id, id prefix or name)
// was created from, with the defaults create filled in (network, restart
// policy).
func (r *Runtime) ContainerSpec(ref string) (runtime.Spec, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupLocked(ref)
	if err != nil {
		return runtime.Spec{}, err
	}
	s := c.rec.Spec
	s.Entrypoint = slices.Clone(s.Entrypoint)
	s.Cmd = slices.Clone(s.Cmd)
	s.Env = slices.Clone(s.Env)
	s.Labels = maps.Clone(s.Labels)
	s.Volumes = slices.Clone(s.Volumes)
	s.Publish = slices.Clone(s.Publish)
	if s.Health != nil {
		h := *s.Health
		h.Cmd = slices.Clone(h.Cmd)
		s.Health = &h
	}
	return s, nil
}

// StateDir is the directory the runtime keeps its state in.
func (r *Runtime) StateDir() string { return r.opts.stateDir }
