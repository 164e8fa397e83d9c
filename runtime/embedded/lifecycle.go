package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/network"
)

// ErrCommandNotFound wraps a start that failed because the command does
// not exist in the image (docker exits 127 for it).
var ErrCommandNotFound = errors.New("command not found")

// run is one execution of a container's process and what lives with it.
type run struct {
	lc      *libcontainer.Container
	pid     int
	exited  chan struct{} // closed once the exit is recorded
	proxies []*network.Proxy
	cancel  context.CancelFunc // stops health checks and the log tailer
	wg      sync.WaitGroup
	once    sync.Once
	killed  atomic.Bool // berth sent SIGKILL
}

// signal sends sig to the run's init process, remembering a SIGKILL: a
// process that was not our child (re-attached) then still gets an exit
// code, 137, as nothing else can end it after an uncatchable kill.
func (rn *run) signal(sig unix.Signal) error {
	if sig == unix.SIGKILL {
		rn.killed.Store(true)
	}
	return rn.lc.Signal(sig)
}

// detach stops berth's helpers of a run (proxies, health, tailer) without
// touching the process.
func (rn *run) detach() {
	rn.once.Do(func() {
		rn.cancel()
		for _, p := range rn.proxies {
			_ = p.Close()
		}
		rn.wg.Wait()
	})
}

// start mounts the root, creates the libcontainer container and runs its
// init process; the caller holds c.op. On error the run's resources are
// released (the container itself stays, as created).
func (r *Runtime) start(ctx context.Context, c *ctr) (err error) {
	r.mu.Lock()
	rec := c.rec
	running := c.run != nil
	r.mu.Unlock()
	if running {
		return nil
	}
	id := rec.C.ID
	dir := r.ctrDir(id)
	t0 := time.Now()
	// Every run goes into this daemon's marked cgroup root (a container
	// of an older berth moves there at its first start), recorded before
	// the process exists so a crash cannot hide where it ran.
	cgroup := r.newCgroup(id)
	if rec.Cgroup != cgroup {
		r.update(c, func(rc *record) { rc.Cgroup = cgroup })
	}
	if err := mountRootfs(dir, rec.Lower); err != nil {
		return err
	}
	var lc *libcontainer.Container
	defer func() {
		if err != nil {
			if lc != nil {
				_ = destroyLC(lc)
			}
			_ = unmountRootfs(dir)
		}
	}()
	rootfs := filepath.Join(dir, "rootfs")
	if err := writeEtcFiles(rootfs, rec.C); err != nil {
		return err
	}
	uid, gid, groups, err := resolveUser(rootfs, rec.C.User)
	if err != nil {
		return err
	}
	proxies, err := publishPorts(rec.C)
	if err != nil {
		closeProxies(proxies)
		return err
	}
	defer func() {
		if err != nil {
			closeProxies(proxies)
		}
	}()
	for _, v := range rec.Spec.Volumes {
		if _, err := os.Stat(v.Source); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(v.Source, 0o755); err != nil {
				return fmt.Errorf("volume %s: %w", v.Source, err)
			}
		}
	}
	spec := OCISpec(OCIParams{
		Rootfs: rootfs, Args: rec.C.Cmd, Env: rec.C.Env, Cwd: rec.C.WorkingDir,
		UID: uid, GID: gid, Groups: groups, Hostname: rec.C.Hostname, ReadOnly: rec.Spec.ReadOnly,
		Netns: rec.Netns, HostNet: rec.Spec.Network == runtime.NetworkHost,
		CgroupPath: cgroup, Memory: rec.Spec.Memory, CPUs: rec.Spec.CPUs, Pids: rec.Spec.PidsLimit,
		Binds: rec.Spec.Volumes,
	})
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return fmt.Errorf("container config: %w", err)
	}
	if old, err := libcontainer.Load(r.lcRoot(), id); err == nil {
		_ = destroyLC(old)
	}
	tConfig := time.Since(t0)
	lc, err = libcontainer.Create(r.lcRoot(), id, cfg)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	tCreate := time.Since(t0)
	stdout, stderr, err := c.logs.openRaw()
	if err != nil {
		return err
	}
	defer stdout.Close()
	defer stderr.Close()
	proc := &libcontainer.Process{
		Args: rec.C.Cmd, Env: rec.C.Env, Cwd: rec.C.WorkingDir,
		UID: int(uid), GID: int(gid), AdditionalGroups: toInts(groups),
		Stdout: stdout, Stderr: stderr, Init: true,
	}
	if err := runWatched(ctx, lc, proc, cgroup); err != nil {
		return startError(rec.C.Cmd[0], err)
	}
	tRun := time.Since(t0)
	pid, err := proc.Pid()
	if err != nil {
		return err
	}
	waitExec(pid)
	r.log.Debug("container process started", "id", id[:12], "mount_and_config", tConfig, "create", tCreate, "run", tRun, "exec", time.Since(t0))
	r.attach(c, lc, pid, proxies, func() (int, bool) { return waitProcess(proc) }, func(rc *record) {
		rc.UID, rc.GID = uid, gid
		rc.C.Started = time.Now().UTC()
	})
	return nil
}

// attach records a running process and starts its monitor, log tailer and
// health checks; exit reports its exit code (false when unknown).
func (r *Runtime) attach(c *ctr, lc *libcontainer.Container, pid int, proxies []*network.Proxy, exit func() (int, bool), fn func(*record)) {
	ctx, cancel := context.WithCancel(context.Background())
	rn := &run{lc: lc, pid: pid, exited: make(chan struct{}), proxies: proxies, cancel: cancel}
	var hc *runtime.HealthCheck
	r.update(c, func(rc *record) {
		c.run = rn
		rc.C.State = runtime.StateRunning
		rc.C.Pid = pid
		rc.C.Error = ""
		rc.C.OOMKilled = false
		if rc.Spec.Health != nil {
			hc = rc.Spec.Health
			if rc.C.Health == runtime.HealthNone || fn != nil {
				rc.C.Health = runtime.HealthStarting
			}
		}
		if fn != nil {
			fn(rc)
		}
	}, runtime.EventStart)
	rn.wg.Add(1)
	go func() {
		defer rn.wg.Done()
		c.logs.follow(ctx)
	}()
	if hc != nil {
		rn.wg.Add(1)
		go func() {
			defer rn.wg.Done()
			r.healthLoop(ctx, c, rn, *hc)
		}()
	}
	go func() {
		code, known := exit()
		r.exited(c, rn, code, known)
	}()
}

// startTimeout bounds libcontainer's Run: a start that has not finished
// by then (a wedged init) is killed rather than holding the container's
// lock for ever.
const startTimeout = 2 * time.Minute

// runWatched runs lc.Run(proc); if ctx ends or startTimeout passes
// first, it kills whatever runs in the container's cgroup, which makes Run
// return.
func runWatched(ctx context.Context, lc *libcontainer.Container, proc *libcontainer.Process, cgroup string) error {
	var (
		mu       sync.Mutex
		finished bool
	)
	done := make(chan struct{})
	defer func() {
		mu.Lock()
		finished = true // no kill once Run has returned
		mu.Unlock()
		close(done)
	}()
	go func() {
		t := time.NewTimer(startTimeout)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-ctx.Done():
		case <-t.C:
		}
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			killCgroup(cgroup)
		}
	}()
	return lc.Run(proc)
}

// waitExec waits (up to a second) until the container's init has exec'd
// the user's command. libcontainer returns a moment before that, while the
// Go init still runs as pid 1, and a SIGTERM in that window ends it with
// status 2 instead of reaching the command. Its command line is
// "<our argv[0]> init" until the exec.
func waitExec(pid int) {
	initCmdline := os.Args[0] + "\x00init\x00"
	path := fmt.Sprintf("/proc/%d/cmdline", pid)
	deadline := time.Now().Add(time.Second)
	for d := 50 * time.Microsecond; time.Now().Before(deadline); d = min(2*d, 5*time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil || string(b) != initCmdline {
			return
		}
		time.Sleep(d)
	}
}

// publishPorts starts a proxy per published port of c; on error it
// returns the proxies it started with the error.
func publishPorts(c runtime.Container) ([]*network.Proxy, error) {
	var proxies []*network.Proxy
	for _, p := range c.Ports {
		if p.HostPort == 0 {
			continue
		}
		px, err := network.Publish(p.HostIP, p.HostPort, fmt.Sprintf("%s:%d", c.IP, p.Port))
		if err != nil {
			return proxies, runtime.Errorf(runtime.ErrConflict, "%w", err)
		}
		proxies = append(proxies, px)
	}
	return proxies, nil
}

func closeProxies(ps []*network.Proxy) {
	for _, p := range ps {
		_ = p.Close()
	}
}

// errExitUnknown is recorded for a container whose process ended while no
// daemon was its parent, so its exit status was lost.
const errExitUnknown = "exit status unknown: the process exited while no berth daemon was watching it"

// errExitOOM is recorded instead when the kernel's OOM killer acted in the
// container's memory cgroup: its SIGKILL (137) is the likely end.
const errExitOOM = "exit status 137 assumed: the process exited while no berth daemon was watching it, and the kernel's OOM killer acted in the container"

// lostExit is the exit code and error recorded for a process whose exit
// status was lost (see errExitUnknown): 137 when the OOM killer acted in
// its memory cgroup, else 255.
func lostExit(oom bool) (int, string) {
	if oom {
		return 128 + int(unix.SIGKILL), errExitOOM
	}
	return 255, errExitUnknown
}

// waitProcess waits for a child process and returns its exit code, with
// 128+signal for a killed process as shells and docker report it.
func waitProcess(proc *libcontainer.Process) (int, bool) {
	st, _ := proc.Wait() // a non-nil state comes with the exit status even on error
	if st == nil {
		return 255, false
	}
	return exitCode(st.Sys().(syscall.WaitStatus)), true
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// waitPid waits for a process that may not be our child (re-attached after
// a daemon restart): a child is reaped with its status; for any other
// process the exit is seen through a pidfd and the status is unknown.
func waitPid(done <-chan struct{}, pid int) (int, bool) {
	var ws unix.WaitStatus
	if wpid, err := unix.Wait4(pid, &ws, 0, nil); err == nil && wpid == pid {
		return exitCode(syscall.WaitStatus(ws)), true
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 255, false
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 1000)
		if n > 0 {
			return 255, false
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return 255, false
		}
		select {
		case <-done:
			return 255, false
		default:
		}
	}
}

// exited records the end of a run: releases its resources, emits die, and
// applies the restart policy.
func (r *Runtime) exited(c *ctr, rn *run, code int, known bool) {
	if r.isClosed() {
		return // a later Runtime re-attaches and sees the exit
	}
	rn.detach()
	if !known && rn.killed.Load() {
		code, known = 128+int(unix.SIGKILL), true
	}
	r.mu.Lock()
	cgroup := r.cgroupPath(c.rec)
	r.mu.Unlock()
	oom := oomKilled(cgroup)
	_ = destroyLC(rn.lc)
	_ = unmountRootfs(r.ctrDir(c.rec.C.ID))
	_ = c.logs.sync(true)
	var started time.Time
	r.update(c, func(rc *record) {
		c.run = nil
		started = rc.C.Started
		rc.C.State = runtime.StateExited
		rc.C.Pid = 0
		rc.C.ExitCode = code
		rc.C.OOMKilled = oom
		rc.C.Finished = time.Now().UTC()
		if !known {
			rc.C.ExitCode, rc.C.Error = lostExit(oom)
		}
		if rc.Spec.Health != nil && rc.C.Health != runtime.HealthNone {
			rc.C.Health = runtime.HealthUnhealthy
		}
	}, runtime.EventDie)
	close(rn.exited)
	r.maybeRestart(c, time.Since(started))
}

// shouldRestart applies the restart policy to an exited container.
func shouldRestart(rec record) bool {
	if rec.ManualStop {
		return false
	}
	switch rec.Spec.Restart.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return rec.C.ExitCode != 0 && (rec.Spec.Restart.MaxRetries == 0 || rec.C.RestartCnt < rec.Spec.Restart.MaxRetries)
	}
	return false
}

// maybeRestart schedules a restart with docker's backoff: 100ms doubling
// per restart up to a minute, reset after 10s of healthy running.
func (r *Runtime) maybeRestart(c *ctr, ran time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.removed || r.isClosed() || !shouldRestart(c.rec) || c.pending != nil {
		return
	}
	if ran >= 10*time.Second || c.backoff == 0 {
		c.backoff = 100 * time.Millisecond
	} else {
		c.backoff = min(2*c.backoff, time.Minute)
	}
	delay := c.backoff
	cancel := make(chan struct{})
	c.pending = cancel
	c.rec.C.State = runtime.StateRestarting
	_ = r.persist(c)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-cancel:
			return
		case <-r.closed:
			return
		}
		c.op.Lock()
		defer c.op.Unlock()
		r.mu.Lock()
		still := c.pending == cancel && !c.removed
		c.pending = nil
		if still {
			c.rec.C.RestartCnt++
		}
		r.mu.Unlock()
		if !still {
			return
		}
		if err := r.start(context.Background(), c); err != nil {
			r.log.Warn("restart container", "id", c.rec.C.ID, "err", err)
			r.update(c, func(rc *record) { rc.C.State = runtime.StateExited; rc.C.Error = err.Error() })
			r.maybeRestart(c, 0)
		}
	}()
}

// cancelRestart drops a scheduled restart; callers hold r.mu.
func cancelRestart(c *ctr) bool {
	if c.pending == nil {
		return false
	}
	close(c.pending)
	c.pending = nil
	if c.rec.C.State == runtime.StateRestarting {
		c.rec.C.State = runtime.StateExited
	}
	return true
}

// lockCtr finds a container and takes its operation lock; a container
// removed while the caller waited for the lock is not found.
func (r *Runtime) lockCtr(ref string) (*ctr, func(), error) {
	c, err := r.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	c.op.Lock()
	r.mu.Lock()
	removed := c.removed
	r.mu.Unlock()
	if removed {
		c.op.Unlock()
		return nil, nil, runtime.Errorf(runtime.ErrNotFound, "no such container: %s (removed)", ref)
	}
	return c, c.op.Unlock, nil
}

// Start starts a created or exited container.
func (r *Runtime) Start(ctx context.Context, ref string) error {
	c, unlock, err := r.lockCtr(ref)
	if err != nil {
		return err
	}
	defer unlock()
	r.mu.Lock()
	cancelRestart(c)
	c.rec.ManualStop = false
	r.mu.Unlock()
	return r.start(ctx, c)
}

// Stop sends the stop signal (SIGTERM unless the spec says otherwise),
// waits up to grace, then kills. A stopped container is left alone.
func (r *Runtime) Stop(ctx context.Context, ref string, grace time.Duration) error {
	c, unlock, err := r.lockCtr(ref)
	if err != nil {
		return err
	}
	defer unlock()
	return r.stop(ctx, c, grace)
}

// stop is Stop with c.op held.
func (r *Runtime) stop(ctx context.Context, c *ctr, grace time.Duration) error {
	r.mu.Lock()
	rn := c.run
	c.rec.ManualStop = true
	wasPending := cancelRestart(c)
	_ = r.persist(c)
	sig := stopSignal(c.rec.Spec.StopSignal)
	if rn == nil && wasPending {
		r.emit(runtime.EventStop, c)
	}
	r.mu.Unlock()
	if rn == nil {
		return nil
	}
	r.emitKill(c, sig)
	if d := r.opts.stopDelay; d > 0 { // drain first (WithStopDelay)
		select {
		case <-time.After(d):
		case <-rn.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_ = rn.signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-rn.exited:
	case <-t.C:
		_ = rn.signal(unix.SIGKILL)
		select {
		case <-rn.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	r.update(c, func(*record) {}, runtime.EventStop)
	return nil
}

// emitKill announces a signal about to be sent to c (Docker's kill event):
// for a stop, it lets the registrar drain c before the process is gone.
func (r *Runtime) emitKill(c *ctr, sig unix.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events.publish(runtime.Event{Type: runtime.EventKill, Time: time.Now().UTC(), Container: snapshot(c), Signal: unix.SignalName(sig)})
}

func stopSignal(name string) unix.Signal {
	if name == "" {
		return unix.SIGTERM
	}
	if s := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(name), "SIG")); s != 0 {
		return s
	}
	return unix.SIGTERM
}

// ParseSignal parses "KILL", "SIGKILL" or "9".
func ParseSignal(s string) (unix.Signal, error) {
	if s == "" {
		return unix.SIGKILL, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	if sig := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG")); sig != 0 {
		return sig, nil
	}
	return 0, runtime.Errorf(runtime.ErrInvalid, "invalid signal %q", s)
}

// Kill sends sig to the container's init process. SIGKILL and SIGTERM
// count as a manual stop for the restart policy, as in docker.
func (r *Runtime) Kill(ctx context.Context, ref string, sig unix.Signal) error {
	c, err := r.lookup(ref)
	if err != nil {
		return err
	}
	r.mu.Lock()
	rn := c.run
	if rn != nil && (sig == unix.SIGKILL || sig == unix.SIGTERM) {
		c.rec.ManualStop = true
		_ = r.persist(c)
	}
	r.mu.Unlock()
	if rn == nil {
		return runtime.Errorf(runtime.ErrConflict, "container %s is not running", ref)
	}
	r.emitKill(c, sig)
	if err := rn.signal(sig); err != nil {
		return fmt.Errorf("kill %s: %w", ref, err)
	}
	return ctx.Err()
}

// Restart stops (with grace) and starts the container again.
func (r *Runtime) Restart(ctx context.Context, ref string, grace time.Duration) error {
	c, unlock, err := r.lockCtr(ref)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.stop(ctx, c, grace); err != nil {
		return err
	}
	r.mu.Lock()
	c.rec.ManualStop = false
	r.mu.Unlock()
	return r.start(ctx, c)
}

// Remove deletes a container; a running one only with runtime.Force().
func (r *Runtime) Remove(ctx context.Context, ref string, opts ...runtime.RemoveOption) error {
	o := runtime.ApplyRemoveOptions(opts)
	c, unlock, err := r.lockCtr(ref)
	if err != nil {
		return err
	}
	defer unlock()
	r.mu.Lock()
	rn := c.run
	c.rec.ManualStop = true
	cancelRestart(c)
	r.mu.Unlock()
	if rn != nil {
		if !o.Force {
			return runtime.Errorf(runtime.ErrConflict, "cannot remove running container %s: stop it first or force", ref)
		}
		_ = rn.signal(unix.SIGKILL)
		select {
		case <-rn.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return r.destroy(c)
}

// startError turns libcontainer's start failure into a docker-like error.
func startError(cmd string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory") && strings.Contains(msg, "exec") {
		return fmt.Errorf("exec: %q: executable file not found in $PATH: %w", cmd, ErrCommandNotFound)
	}
	return fmt.Errorf("start container: %w", err)
}

// resolveUser turns "name", "uid", "name:group" or "uid:gid" into ids,
// reading the image's /etc/passwd and /etc/group.
func resolveUser(rootfs, spec string) (uint32, uint32, []uint32, error) {
	passwd, err := securejoin.SecureJoin(rootfs, "/etc/passwd")
	if err != nil {
		return 0, 0, nil, err
	}
	group, err := securejoin.SecureJoin(rootfs, "/etc/group")
	if err != nil {
		return 0, 0, nil, err
	}
	u, err := user.GetExecUserPath(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return 0, 0, nil, runtime.Errorf(runtime.ErrInvalid, "user %q: %w", spec, err)
	}
	var groups []uint32
	for _, g := range u.Sgids {
		groups = append(groups, uint32(g))
	}
	return uint32(u.Uid), uint32(u.Gid), groups, nil
}

func toInts(v []uint32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// destroyLC removes a libcontainer container, killing what still runs.
func destroyLC(lc *libcontainer.Container) error {
	if st, err := lc.Status(); err == nil && st != libcontainer.Stopped {
		_ = lc.Signal(unix.SIGKILL)
		for range 200 {
			if st, err := lc.Status(); err != nil || st == libcontainer.Stopped {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return lc.Destroy()
}
