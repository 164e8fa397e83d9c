package embedded

import (
	"context"
	"maps"
	"slices"

	"github.com/berthd/berth/runtime"
)

// What the Docker-compatible API (package api/dockercompat) needs beyond
// runtime.Runtime: Docker's create-then-start, and the spec a container
// was created from (inspect shows it as Config and HostConfig).

// Create makes a container without starting it, as docker create does:
// its record, directory and network attachment exist and a create event
// goes out; Start runs it. On any error nothing is left.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) (runtime.Container, error) {
	c, err := r.create(ctx, spec)
	if err != nil {
		return runtime.Container{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
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
