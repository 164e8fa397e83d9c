package embedded

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/image"
	"github.com/berthd/berth/runtime/embedded/network"
	"github.com/berthd/berth/runtime/embedded/owner"
)

// Runtime runs containers on this host. It implements runtime.Runtime.
type Runtime struct {
	opts   options
	owner  *owner.Owner // the state dir's lock and the mark of everything we create
	images *image.Store
	net    *network.Manager
	log    *slog.Logger
	events *broker
	// initExe is the sealed memfd holding the companion container init
	// (nil: containers' init re-executes this binary). It stays open
	// until Close: container inits find it among our descriptors.
	initExe  *os.File
	initPath string

	mu     sync.Mutex // guards ctrs and every ctr's rec, run, pending
	ctrs   map[string]*ctr
	closed chan struct{}
	wg     sync.WaitGroup // health loops, tailers, pending restarts
}

var _ runtime.Runtime = (*Runtime)(nil)

// ctr is one container. op serialises lifecycle operations on it; the
// fields below are guarded by Runtime.mu.
type ctr struct {
	op      sync.Mutex
	rec     record
	run     *run          // non-nil while a process runs
	pending chan struct{} // non-nil while a restart is scheduled; close to cancel
	backoff time.Duration
	logs    *tailer
	removed bool
	// holds counts HoldRemoval callers: an AutoRemove container that
	// exited stays until they release it (or autoRemoveWait passes).
	holds int
	// announced: the create event went out, so destroy must follow.
	announced bool
}

// record is what is persisted per container.
type record struct {
	Spec       runtime.Spec      `json:"spec"`
	C          runtime.Container `json:"container"`
	Lower      []string          `json:"lower"` // layer dirs, top first
	UID        uint32            `json:"uid"`
	GID        uint32            `json:"gid"`
	ManualStop bool              `json:"manual_stop"`
	Netns      string            `json:"netns,omitempty"`
	// Cgroup is the cgroup path of the container's current or last run;
	// "" in records of an older berth, whose path was /<parent>/<id>.
	Cgroup string `json:"cgroup,omitempty"`
}

// New claims the state dir (refusing one another daemon uses), checks the
// host (root, overlayfs, cgroups), sets up the bridge (refusing one or a
// subnet another daemon or interface uses), re-attaches to running
// containers and removes this daemon's orphans. See the package doc on
// ownership.
func New(ctx context.Context, opts ...Option) (_ *Runtime, err error) {
	o := defaults()
	for _, f := range opts {
		f(&o)
	}
	if err := checkHost(probeHost()); err != nil {
		return nil, err
	}
	initExe, initPath, err := openInitBinary(o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && initExe != nil {
			initExe.Close()
		}
	}()
	own, err := owner.Claim(o.stateDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			own.Release()
		}
	}()
	o.stateDir = own.StateDir
	for _, d := range []string{filepath.Join(o.stateDir, "containers"), filepath.Join(o.stateDir, "libcontainer")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	images, err := image.Open(filepath.Join(o.stateDir, "images"))
	if err != nil {
		return nil, err
	}
	nm, err := network.New(network.Config{
		Bridge: o.bridge, Subnet: o.subnet, StateDir: filepath.Join(o.stateDir, "network"),
		Owner: own, Log: o.log,
	})
	if err != nil {
		return nil, err
	}
	o.log.Debug("embedded runtime", "state_dir", o.stateDir, "mark", own.Mark, "bridge", o.bridge, "cgroup", "/"+o.cgroupParent+"/"+own.Mark)
	r := &Runtime{
		owner: own, opts: o, images: images, net: nm, log: o.log,
		events: newBroker(), ctrs: map[string]*ctr{}, closed: make(chan struct{}),
		initExe: initExe, initPath: initPath,
	}
	if err := r.recover(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Images is the runtime's image store.
func (r *Runtime) Images() *image.Store { return r.images }

// Mark is the ownership mark every resource of this runtime carries (see
// package owner).
func (r *Runtime) Mark() string { return r.owner.Mark }

// Network is the runtime's bridge network.
func (r *Runtime) Network() *network.Manager { return r.net }

// Close stops berth's side of every container (log tailers, health
// checks, port proxies, pending restarts, event streams) and leaves the
// containers running, for a later New to re-attach to. It releases the
// state dir.
func (r *Runtime) Close() error {
	r.mu.Lock()
	select {
	case <-r.closed:
		r.mu.Unlock()
		return nil
	default:
	}
	close(r.closed)
	var runs []*run
	for _, c := range r.ctrs {
		if c.run != nil {
			runs = append(runs, c.run)
		}
	}
	r.mu.Unlock()
	for _, rn := range runs {
		rn.detach()
	}
	r.events.close()
	r.wg.Wait()
	removeCgroupParent(r.cgroupRoot())
	if r.initExe != nil {
		r.initExe.Close()
	}
	return r.owner.Release()
}

func (r *Runtime) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

func (r *Runtime) ctrDir(id string) string { return filepath.Join(r.opts.stateDir, "containers", id) }
func (r *Runtime) lcRoot() string          { return filepath.Join(r.opts.stateDir, "libcontainer") }

// cgroupRoot holds this runtime's container cgroups: /<parent>/<mark>.
func (r *Runtime) cgroupRoot() string { return "/" + r.opts.cgroupParent + "/" + r.owner.Mark }

// newCgroup is the cgroup path of a new run of container id.
func (r *Runtime) newCgroup(id string) string { return r.cgroupRoot() + "/" + id }

// cgroupPath is the cgroup of rec's current or last run.
func (r *Runtime) cgroupPath(rec record) string {
	if rec.Cgroup != "" {
		return rec.Cgroup
	}
	return "/" + r.opts.cgroupParent + "/" + rec.C.ID // an older berth's record
}

// persist writes c's record; callers hold r.mu.
func (r *Runtime) persist(c *ctr) error {
	b, err := json.MarshalIndent(c.rec, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(r.ctrDir(c.rec.C.ID), "container.json")
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("persist container %s: %w", c.rec.C.ID, err)
	}
	return os.Rename(p+".tmp", p)
}

// emit publishes an event with c's current snapshot; callers hold r.mu.
func (r *Runtime) emit(t runtime.EventType, c *ctr) {
	r.events.publish(runtime.Event{Type: t, Time: time.Now().UTC(), Container: snapshot(c)})
}

// update changes c's record under r.mu, persists it, and emits the events.
func (r *Runtime) update(c *ctr, fn func(*record), events ...runtime.EventType) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&c.rec)
	if !c.removed {
		if err := r.persist(c); err != nil {
			r.log.Error("persist container", "id", c.rec.C.ID, "err", err)
		}
	}
	for _, e := range events {
		r.emit(e, c)
	}
}

func snapshot(c *ctr) runtime.Container {
	s := c.rec.C
	s.Env = slices.Clone(s.Env)
	s.Cmd = slices.Clone(s.Cmd)
	s.Ports = slices.Clone(s.Ports)
	s.Networks = slices.Clone(s.Networks)
	s.Mounts = slices.Clone(s.Mounts)
	labels := make(map[string]string, len(s.Labels))
	for k, v := range s.Labels {
		labels[k] = v
	}
	s.Labels = labels
	return s
}

// lookup finds a container by id, unique id prefix or name.
func (r *Runtime) lookup(ref string) (*ctr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookupLocked(ref)
}

func (r *Runtime) lookupLocked(ref string) (*ctr, error) {
	if c, ok := r.ctrs[ref]; ok {
		return c, nil
	}
	ref = strings.TrimPrefix(ref, "/")
	var hits []*ctr
	for id, c := range r.ctrs {
		if c.rec.C.Name == ref {
			return c, nil
		}
		if ref != "" && strings.HasPrefix(id, ref) {
			hits = append(hits, c)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return nil, runtime.Errorf(runtime.ErrNotFound, "no such container: %s", ref)
	default:
		return nil, runtime.Errorf(runtime.ErrInvalid, "container id prefix %q is ambiguous", ref)
	}
}

// List returns every container, newest first.
func (r *Runtime) List(ctx context.Context) ([]runtime.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtime.Container, 0, len(r.ctrs))
	for _, c := range r.ctrs {
		out = append(out, snapshot(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, ctx.Err()
}

// Inspect returns one container by id, id prefix or name.
func (r *Runtime) Inspect(ctx context.Context, ref string) (runtime.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.lookupLocked(ref)
	if err != nil {
		return runtime.Container{}, err
	}
	return snapshot(c), ctx.Err()
}

// Events streams lifecycle events; see the package doc.
func (r *Runtime) Events(ctx context.Context) (<-chan runtime.Event, <-chan error) {
	return r.events.subscribe(ctx)
}

// ImageInUse reports whether a container uses the image ID.
func (r *Runtime) ImageInUse(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.ctrs {
		if c.rec.C.ImageID == id {
			return true
		}
	}
	return false
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run creates and starts a container; on any error nothing is left.
func (r *Runtime) Run(ctx context.Context, spec runtime.Spec) (runtime.Container, error) {
	t0 := time.Now()
	c, err := r.create(ctx, spec)
	if err != nil {
		return runtime.Container{}, err
	}
	r.log.Debug("container created", "id", c.rec.C.ID[:12], "took", time.Since(t0))
	c.op.Lock()
	defer c.op.Unlock()
	if err := r.start(ctx, c); err != nil {
		if derr := r.destroy(c); derr != nil {
			r.log.Error("clean up failed container", "id", c.rec.C.ID, "err", derr)
		}
		return runtime.Container{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return snapshot(c), nil
}

// create makes the container's record, directory, network and files.
func (r *Runtime) create(ctx context.Context, spec runtime.Spec) (_ *ctr, err error) {
	if r.isClosed() {
		return nil, errors.New("runtime is closed")
	}
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	img, err := r.images.Get(spec.Image)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			return nil, runtime.Errorf(runtime.ErrNotFound, "unable to find image %q locally (pull it first)", spec.Image)
		}
		return nil, err
	}
	m, err := mergeConfig(spec, img.Config)
	if err != nil {
		return nil, err
	}
	if spec.Network == "" {
		spec.Network = runtime.NetworkBridge
	}
	if spec.Restart.Name == "" {
		spec.Restart.Name = "no"
	}
	id := newID()
	name := spec.Name
	if name == "" {
		base := filepath.Base(strings.SplitN(spec.Image, ":", 2)[0])
		name = base + "-" + id[:6]
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = id[:12]
		if spec.Network == runtime.NetworkHost {
			hostname, _ = os.Hostname()
		}
	}
	c := &ctr{rec: record{
		Spec:  spec,
		Lower: r.images.LayerDirs(img),
		C: runtime.Container{
			ID: id, Name: name, Image: spec.Image, ImageID: img.ID, Hostname: hostname,
			Cmd: m.Args, Env: m.Env, Labels: m.Labels, WorkingDir: m.WorkingDir, User: m.User,
			NetworkMode: spec.Network, Ports: m.Ports, Mounts: spec.Volumes,
			State: runtime.StateCreated, Health: runtime.HealthNone, Restart: spec.Restart,
			Created: time.Now().UTC(),
		},
	}}
	c.logs = newTailer(r.ctrDir(id))
	r.mu.Lock()
	for _, o := range r.ctrs {
		if o.rec.C.Name == name {
			r.mu.Unlock()
			return nil, runtime.Errorf(runtime.ErrConflict, "container name %q is already in use by container %s", name, o.rec.C.ID[:12])
		}
	}
	r.ctrs[id] = c
	r.mu.Unlock()
	defer func() {
		if err != nil {
			if derr := r.destroy(c); derr != nil {
				r.log.Error("clean up failed container", "id", id, "err", derr)
			}
		}
	}()
	dir := r.ctrDir(id)
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("container dir: %w", err)
		}
	}
	if spec.Network == runtime.NetworkBridge {
		att, err := r.net.Attach(id)
		if err != nil {
			return nil, err
		}
		c.rec.Netns = att.Netns
		c.rec.C.IP = att.IP.String()
		c.rec.C.Networks = []runtime.Network{{Name: runtime.NetworkBridge, IP: att.IP.String(), PrefixLen: att.PrefixLen, Gateway: att.Gateway.String(), MAC: att.MAC}}
	}
	r.update(c, func(*record) { c.announced = true }, runtime.EventCreate)
	return c, ctx.Err()
}

// destroy removes everything of a container that is not running:
// network, mounts, libcontainer state, cgroups, directory, record.
func (r *Runtime) destroy(c *ctr) error {
	id := c.rec.C.ID
	var errs []error
	if lc, err := libcontainer.Load(r.lcRoot(), id); err == nil {
		errs = append(errs, destroyLC(lc))
	}
	errs = append(errs, unmountRootfs(r.ctrDir(id)))
	if c.rec.Spec.Network == runtime.NetworkBridge {
		errs = append(errs, r.net.Detach(id))
	}
	removeCgroup(r.cgroupPath(c.rec))
	errs = append(errs, os.RemoveAll(r.ctrDir(id)))
	r.mu.Lock()
	delete(r.ctrs, id)
	c.removed = true
	if c.announced {
		r.emit(runtime.EventDestroy, c)
	}
	r.mu.Unlock()
	return errors.Join(errs...)
}
