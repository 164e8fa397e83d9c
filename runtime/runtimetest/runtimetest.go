package runtimetest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/runtime"
)

// Op names a runtime.Runtime method, for Fail and Calls.
type Op string

// The operations of runtime.Runtime.
const (
	OpRun     Op = "Run"
	OpStop    Op = "Stop"
	OpRemove  Op = "Remove"
	OpList    Op = "List"
	OpInspect Op = "Inspect"
	OpEvents  Op = "Events"
)

// Behavior scripts how a container's process reacts to signals.
type Behavior struct {
	// TermExit is the exit code after a terminating signal other than
	// SIGKILL (0: 128+signal; a Go program as PID 1 exits 2).
	TermExit int
	// CleanTerm makes a terminating signal end the process with status 0,
	// as a server that shuts down cleanly (examples/whoami).
	CleanTerm bool
	// IgnoreStop makes the process ignore its stop signal: Stop waits out
	// the grace period, then kills (exit 137).
	IgnoreStop bool
}

// Runtime is the scripted runtime. The zero value is not usable; call New.
type Runtime struct {
	mu      sync.Mutex
	ctrs    map[string]*ctr // by ID
	subs    map[*sub]struct{}
	fail    map[Op]error
	calls   map[Op]int
	nextIP  int
	closed  bool
	network string
}

type ctr struct {
	c        runtime.Container
	behavior Behavior
	stopSig  string
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns an empty runtime.
func New() *Runtime {
	return &Runtime{
		ctrs:  make(map[string]*ctr),
		subs:  make(map[*sub]struct{}),
		fail:  make(map[Op]error),
		calls: make(map[Op]int),
	}
}

// Fail makes every later call of op return err (nil: succeed again).
func (r *Runtime) Fail(op Op, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.fail, op)
		return
	}
	r.fail[op] = err
}

// Calls returns how many times op was called (failed calls included).
func (r *Runtime) Calls(op Op) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[op]
}

// call counts op and returns its injected failure; callers hold r.mu.
func (r *Runtime) call(op Op) error {
	r.calls[op]++
	if r.closed {
		return fmt.Errorf("runtimetest: %s: runtime closed", op)
	}
	if err := r.fail[op]; err != nil {
		return fmt.Errorf("runtimetest: %s: %w", op, err)
	}
	return nil
}

// Run implements runtime.Runtime: Add, then Start.
func (r *Runtime) Run(ctx context.Context, spec runtime.Spec) (runtime.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call(OpRun); err != nil {
		return runtime.Container{}, err
	}
	if err := ctx.Err(); err != nil {
		return runtime.Container{}, err
	}
	c, err := r.addLocked(spec)
	if err != nil {
		return runtime.Container{}, err
	}
	r.startLocked(c)
	return clone(c.c), nil
}

// Add creates a container from spec without starting it (create event).
func (r *Runtime) Add(spec runtime.Spec) (runtime.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.addLocked(spec)
	if err != nil {
		return runtime.Container{}, err
	}
	return clone(c.c), nil
}

func (r *Runtime) addLocked(spec runtime.Spec) (*ctr, error) {
	if spec.Image == "" {
		return nil, runtime.Errorf(runtime.ErrInvalid, "runtimetest: create: no image")
	}
	id := randomID()
	name := cmp.Or(spec.Name, "berth_"+id[:12])
	for _, o := range r.ctrs {
		if o.c.Name == name {
			return nil, runtime.Errorf(runtime.ErrConflict, "runtimetest: create: name %q in use by %s", name, o.c.ID[:12])
		}
	}
	c := runtime.Container{
		ID: id, Name: name, Image: spec.Image, ImageID: "sha256:" + randomID(),
		Hostname:    cmp.Or(spec.Hostname, id[:12]),
		Cmd:         append(slices.Clone(spec.Entrypoint), spec.Cmd...),
		Env:         append([]string{}, spec.Env...),
		Labels:      maps.Clone(spec.Labels),
		WorkingDir:  spec.WorkingDir,
		User:        spec.User,
		NetworkMode: cmp.Or(spec.Network, runtime.NetworkBridge),
		Networks:    []runtime.Network{},
		Ports:       slices.Clone(spec.Publish),
		Mounts:      append([]runtime.Mount{}, spec.Volumes...),
		State:       runtime.StateCreated,
		Health:      runtime.HealthNone,
		Restart:     runtime.RestartPolicy{Name: cmp.Or(spec.Restart.Name, "no"), MaxRetries: spec.Restart.MaxRetries},
		Created:     time.Now().UTC(),
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if c.Ports == nil {
		c.Ports = []runtime.Port{}
	}
	if spec.Health != nil {
		c.Health = runtime.HealthStarting
	}
	cc := &ctr{c: c, stopSig: "SIG" + strings.TrimPrefix(strings.ToUpper(cmp.Or(spec.StopSignal, "TERM")), "SIG")}
	r.ctrs[id] = cc
	r.publishLocked(runtime.EventCreate, cc, "")
	return cc, nil
}

// SetBehavior scripts how the container's process reacts to signals.
func (r *Runtime) SetBehavior(ref string, b Behavior) error {
	return r.with(ref, func(c *ctr) error {
		c.behavior = b
		return nil
	})
}

// Start starts a created or exited container: a network update (on a
// network), then start.
func (r *Runtime) Start(ref string) error {
	return r.with(ref, func(c *ctr) error {
		if c.c.Running() {
			return nil // Docker: already started, nothing happens
		}
		r.startLocked(c)
		return nil
	})
}

func (r *Runtime) startLocked(c *ctr) {
	if onNetwork(c.c) {
		r.nextIP++
		ip := fmt.Sprintf("10.88.%d.%d", r.nextIP/250, r.nextIP%250+2)
		c.c.Networks = []runtime.Network{{Name: c.c.NetworkMode, IP: ip, PrefixLen: 16, Gateway: "10.88.0.1"}}
		c.c.IP = ip
	}
	c.c.State = runtime.StateRunning
	c.c.Pid = 1000 + r.nextIP
	c.c.ExitCode, c.c.Error = 0, ""
	c.c.Started = time.Now().UTC()
	if onNetwork(c.c) {
		r.publishLocked(runtime.EventUpdate, c, "")
	}
	r.publishLocked(runtime.EventStart, c, "")
}

func onNetwork(c runtime.Container) bool {
	return c.NetworkMode != runtime.NetworkHost && c.NetworkMode != runtime.NetworkNone
}

// Kill sends sig ("SIGHUP", "SIGKILL", ...) to a running container: a kill
// event, then, for SIGKILL or a terminating signal the process does not
// ignore, its exit.
func (r *Runtime) Kill(ref, sig string) error {
	return r.with(ref, func(c *ctr) error {
		if !c.c.Running() {
			return runtime.Errorf(runtime.ErrConflict, "runtimetest: container %s is not running", ref)
		}
		r.signalLocked(c, sig)
		return nil
	})
}

// signalLocked emits the kill event and reports whether the process
// exited of it.
func (r *Runtime) signalLocked(c *ctr, sig string) bool {
	r.publishLocked(runtime.EventKill, c, sig)
	ev := runtime.Event{Type: runtime.EventKill, Signal: sig}
	switch {
	case sig == "SIGKILL":
		r.exitLocked(c, 137)
	case ev.Terminating() && !(c.behavior.IgnoreStop && sig == c.stopSig):
		code := cmp.Or(c.behavior.TermExit, 128+signalNumber(sig))
		if c.behavior.CleanTerm {
			code = 0
		}
		r.exitLocked(c, code)
	default:
		return false
	}
	return true
}

func signalNumber(sig string) int {
	switch sig {
	case "SIGINT":
		return 2
	case "SIGQUIT":
		return 3
	case "SIGKILL":
		return 9
	case "SIGTERM":
		return 15
	}
	return 0
}

// Exit ends a running container's process by itself with code: die, and a
// network update (on a network).
func (r *Runtime) Exit(ref string, code int) error {
	return r.with(ref, func(c *ctr) error {
		if !c.c.Running() {
			return runtime.Errorf(runtime.ErrConflict, "runtimetest: container %s is not running", ref)
		}
		r.exitLocked(c, code)
		return nil
	})
}

func (r *Runtime) exitLocked(c *ctr, code int) {
	if c.c.State != runtime.StateRemoving {
		c.c.State = runtime.StateExited
	}
	c.c.Pid, c.c.ExitCode, c.c.IP = 0, code, ""
	c.c.Finished = time.Now().UTC()
	for i := range c.c.Networks {
		c.c.Networks[i].IP, c.c.Networks[i].Gateway, c.c.Networks[i].PrefixLen = "", "", 0
	}
	if c.c.Health != runtime.HealthNone {
		c.c.Health = runtime.HealthUnhealthy
	}
	r.publishLocked(runtime.EventDie, c, "")
	if onNetwork(c.c) {
		r.publishLocked(runtime.EventUpdate, c, "")
	}
}

// SetHealth changes a container's health status (health_status event).
func (r *Runtime) SetHealth(ref string, h runtime.Health) error {
	return r.with(ref, func(c *ctr) error {
		c.c.Health = h
		r.publishLocked(runtime.EventHealthStatus, c, "")
		return nil
	})
}

// Update changes a container's snapshot (a rename, a network change) and
// emits an update event.
func (r *Runtime) Update(ref string, fn func(*runtime.Container)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupLocked(ref)
	if err != nil {
		return err
	}
	id := c.c.ID
	fn(&c.c)
	c.c.ID = id
	r.publishLocked(runtime.EventUpdate, c, "")
	return nil
}

// Stop implements runtime.Runtime: kill with the stop signal; if the
// process ignores it, wait out grace and kill with SIGKILL; then stop.
// A container that is not running is left alone.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call(OpStop); err != nil {
		return err
	}
	c, err := r.lookupLocked(id)
	if err != nil {
		return err
	}
	if !c.c.Running() {
		return nil
	}
	if !r.signalLocked(c, c.stopSig) {
		r.mu.Unlock()
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			r.mu.Lock()
			return ctx.Err()
		}
		r.mu.Lock()
		if c.c.Running() {
			r.signalLocked(c, "SIGKILL")
		}
	}
	r.publishLocked(runtime.EventStop, c, "")
	return nil
}

// Remove implements runtime.Runtime.
func (r *Runtime) Remove(ctx context.Context, id string, opts ...runtime.RemoveOption) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call(OpRemove); err != nil {
		return err
	}
	c, err := r.lookupLocked(id)
	if err != nil {
		return err
	}
	if c.c.Running() {
		if !runtime.ApplyRemoveOptions(opts).Force {
			return runtime.Errorf(runtime.ErrConflict, "runtimetest: cannot remove running container %s", id)
		}
		c.c.State = runtime.StateRemoving
		r.signalLocked(c, "SIGKILL")
	}
	c.c.State = runtime.StateRemoving
	delete(r.ctrs, c.c.ID)
	r.publishLocked(runtime.EventDestroy, c, "")
	return ctx.Err()
}

// List implements runtime.Runtime: every container, sorted by name.
func (r *Runtime) List(ctx context.Context) ([]runtime.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call(OpList); err != nil {
		return nil, err
	}
	out := make([]runtime.Container, 0, len(r.ctrs))
	for _, c := range r.ctrs {
		out = append(out, clone(c.c))
	}
	slices.SortFunc(out, func(a, b runtime.Container) int { return strings.Compare(a.Name, b.Name) })
	return out, ctx.Err()
}

// Inspect implements runtime.Runtime: by id, unique id prefix or name.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call(OpInspect); err != nil {
		return runtime.Container{}, err
	}
	c, err := r.lookupLocked(id)
	if err != nil {
		return runtime.Container{}, err
	}
	return clone(c.c), ctx.Err()
}

// with runs fn on the container ref names, holding r.mu.
func (r *Runtime) with(ref string, fn func(*ctr) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupLocked(ref)
	if err != nil {
		return err
	}
	return fn(c)
}

func (r *Runtime) lookupLocked(ref string) (*ctr, error) {
	if c, ok := r.ctrs[ref]; ok {
		return c, nil
	}
	var found *ctr
	for _, c := range r.ctrs {
		if c.c.Name == ref {
			return c, nil
		}
		if ref != "" && strings.HasPrefix(c.c.ID, ref) {
			if found != nil {
				return nil, runtime.Errorf(runtime.ErrInvalid, "runtimetest: container id prefix %q is ambiguous", ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, runtime.Errorf(runtime.ErrNotFound, "runtimetest: no such container: %s", ref)
	}
	return found, nil
}

// clone deep-copies a snapshot, so no two events share a slice or map.
func clone(c runtime.Container) runtime.Container {
	c.Cmd = slices.Clone(c.Cmd)
	c.Env = slices.Clone(c.Env)
	c.Labels = maps.Clone(c.Labels)
	c.Networks = slices.Clone(c.Networks)
	c.Ports = slices.Clone(c.Ports)
	c.Mounts = slices.Clone(c.Mounts)
	return c
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Close ends every event stream; later calls fail.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for s := range r.subs {
		r.endLocked(s, nil)
	}
	return nil
}
