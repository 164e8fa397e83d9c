package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/owner"
)

// recover loads every container record, removes this daemon's orphans
// (state, cgroups, mounts, netns, veths, addresses that belong to no
// container it knows), re-attaches to running containers and applies
// restart policies to those that exited while no daemon watched them.
// Resources of other daemons are told apart by their ownership mark and
// left alone.
func (r *Runtime) recover(ctx context.Context) error {
	cdir := filepath.Join(r.opts.stateDir, "containers")
	ents, err := os.ReadDir(cdir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, e := range ents {
		dir := filepath.Join(cdir, e.Name())
		var rec record
		b, err := os.ReadFile(filepath.Join(dir, "container.json"))
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.C.ID != e.Name() {
			r.log.Warn("removing container dir without a valid record", "dir", dir, "err", err)
			_ = unmountRootfs(dir)
			_ = os.RemoveAll(dir)
			continue
		}
		r.ctrs[rec.C.ID] = &ctr{rec: rec, logs: newTailer(dir), announced: true}
	}
	live := func(id string) bool { _, ok := r.ctrs[id]; return ok }
	var errs []error
	// libcontainer state of unknown containers.
	lcEnts, _ := os.ReadDir(r.lcRoot())
	for _, e := range lcEnts {
		if live(e.Name()) {
			continue
		}
		r.log.Info("removing a libcontainer state this daemon no longer knows", "id", e.Name())
		if lc, err := libcontainer.Load(r.lcRoot(), e.Name()); err == nil {
			errs = append(errs, destroyLC(lc))
		}
		errs = append(errs, os.RemoveAll(filepath.Join(r.lcRoot(), e.Name())))
	}
	// Cgroups: only under this daemon's marked root.
	r.cleanCgroups(live)
	// Mounts of unknown containers.
	for _, m := range mountsUnder(cdir) {
		id, _, _ := strings.Cut(strings.TrimPrefix(m, cdir+"/"), "/")
		if !live(id) {
			r.log.Info("unmounting the root of a container this daemon no longer knows", "mount", m)
			errs = append(errs, unmountRootfs(filepath.Join(cdir, id)))
		}
	}
	errs = append(errs, r.net.Cleanup(live))
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("orphan cleanup", "err", err)
	}
	for _, c := range r.ctrs {
		r.reattach(ctx, c)
	}
	return nil
}

// reattach adopts c's process if it still runs, else records its exit.
func (r *Runtime) reattach(ctx context.Context, c *ctr) {
	id := c.rec.C.ID
	// Read before the cgroup goes: the only trace of how a process that
	// ended unwatched ended.
	oom := oomKilled(r.cgroupPath(c.rec))
	lc, err := libcontainer.Load(r.lcRoot(), id)
	if err == nil {
		if st, serr := lc.Status(); serr == nil && st == libcontainer.Running {
			state, serr := lc.State()
			if serr == nil {
				pid := state.InitProcessPid
				proxies, err := publishPorts(c.rec.C)
				if err != nil {
					r.log.Warn("re-publish ports", "id", id, "err", err)
				}
				r.attach(c, lc, pid, proxies, func() (int, bool) { return waitPid(r.closed, pid) }, nil)
				r.log.Info("re-attached container", "id", id[:12], "name", c.rec.C.Name, "pid", pid)
				return
			}
		}
		_ = destroyLC(lc)
	}
	_ = unmountRootfs(r.ctrDir(id))
	removeCgroup(r.cgroupPath(c.rec))
	wasUp := c.rec.C.State == runtime.StateRunning || c.rec.C.State == runtime.StateRestarting
	if wasUp {
		r.update(c, func(rc *record) {
			wasRunning := rc.C.State == runtime.StateRunning
			rc.C.State = runtime.StateExited
			rc.C.Pid = 0
			if wasRunning {
				rc.C.ExitCode, rc.C.Error = lostExit(oom)
				rc.C.OOMKilled = oom
				rc.C.Finished = time.Now().UTC()
			}
		}, runtime.EventDie)
	}
	switch {
	case c.rec.Spec.Restart.Name == "always" && c.rec.C.State == runtime.StateExited:
		// docker: "always" restarts on daemon start even after a manual stop.
		c.op.Lock()
		defer c.op.Unlock()
		r.mu.Lock()
		c.rec.ManualStop = false
		r.mu.Unlock()
		if err := r.start(ctx, c); err != nil {
			r.log.Warn("restart container on daemon start", "id", id, "err", err)
		}
	case wasUp:
		r.maybeRestart(c, 0)
	}
	if c.rec.C.State == runtime.StateExited {
		r.autoRemove(c) // exited while no daemon watched it
	}
}

// cleanCgroups removes the cgroups under this daemon's root
// (/<parent>/<mark>) that belong to no container it knows, killing what
// runs in them. The parent is shared by every daemon using it: another
// daemon's root, and a container cgroup an older berth put right under
// the parent, are left alone (logged at debug level); the latter are
// still used and removed for the containers this daemon's state knows.
func (r *Runtime) cleanCgroups(live func(string) bool) {
	parent := "/" + r.opts.cgroupParent
	seen := map[string]bool{}
	for _, d := range cgroupDirs(parent) {
		sub, _ := os.ReadDir(d)
		for _, s := range sub {
			name := s.Name()
			if !s.IsDir() || seen[name] {
				continue
			}
			seen[name] = true
			switch {
			case name == r.owner.Mark:
			case owner.IsMark(name):
				r.log.Debug("leaving alone another daemon's cgroups", "cgroup", parent+"/"+name)
			case !live(name):
				r.log.Debug("leaving alone an unmarked cgroup (another daemon's, or an older berth's)", "cgroup", parent+"/"+name)
			}
		}
	}
	root := r.cgroupRoot()
	seen = map[string]bool{}
	for _, d := range cgroupDirs(root) {
		sub, _ := os.ReadDir(d)
		for _, s := range sub {
			if !s.IsDir() || seen[s.Name()] || live(s.Name()) {
				continue
			}
			seen[s.Name()] = true
			r.log.Info("removing the cgroup of a container this daemon no longer knows", "cgroup", root+"/"+s.Name())
			removeCgroup(root + "/" + s.Name())
		}
	}
}
