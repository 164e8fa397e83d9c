package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
)

// RuntimeResult is the JSON of berth bench runtime; its fields are
// part of berth's interface (compared across runs).
type RuntimeResult struct {
	Runs       int     `json:"runs"`
	StartP50Ms float64 `json:"start_p50_ms"`
	StartP90Ms float64 `json:"start_p90_ms"`
	// runc run (foreground): create, start, the process runs, delete.
	RuncP50Ms float64 `json:"runc_p50_ms,omitempty"`
	RuncP90Ms float64 `json:"runc_p90_ms,omitempty"`
	// runc run -d: create and start, returning once the process runs.
	RuncDetachedP50Ms float64 `json:"runc_detached_p50_ms,omitempty"`
	RuncDetachedP90Ms float64 `json:"runc_detached_p90_ms,omitempty"`
	Runc              string  `json:"runc,omitempty"` // the runc binary measured
	// InitBinary is the companion container init used ("": the embedded
	// runtime's containers re-executed berth itself).
	InitBinary string `json:"init_binary,omitempty"`
}

// Runtime measures container start latency over runs runs: the embedded
// runtime (bridge network, overlay root from an imported busybox image,
// Docker's confinement) against "runc run" of a bundle with the same OCI
// spec when runc is on PATH, alternating between them. Needs root and
// busybox-static; everything it creates is removed.
func Runtime(ctx context.Context, runs int, log *slog.Logger) (RuntimeResult, error) {
	return offMain(func() (RuntimeResult, error) { return benchRuntime(ctx, runs, log) })
}

func benchRuntime(ctx context.Context, runs int, log *slog.Logger) (RuntimeResult, error) {
	res := RuntimeResult{Runs: runs}
	tmp, err := os.MkdirTemp("", "berth-bench-runtime-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := embedded.BusyboxRootfs(rootfs); err != nil {
		return res, err
	}
	rt, suffix, stopRuntime, err := startEmbedded(ctx, tmp, "bbench", 254, log)
	if err != nil {
		return res, err
	}
	defer stopRuntime()
	res.InitBinary = rt.InitBinary()
	if _, err := rt.Images().Import(ctx, rootfs, "bench:busybox"); err != nil {
		return res, err
	}
	spec := runtime.Spec{Image: "bench:busybox", Cmd: []string{"true"}, Memory: 64 << 20, PidsLimit: 64}
	runc, _ := exec.LookPath("runc")
	var rc *runcBench
	if runc != "" {
		res.Runc = runc
		rc, err = newRuncBench(runc, tmp, rootfs, suffix)
		if err != nil {
			return res, err
		}
		defer rc.cleanup()
	}
	var starts, fg, detached []time.Duration
	for i := 0; i <= runs; i++ { // round 0 warms up
		t0 := time.Now()
		c, err := rt.Run(ctx, spec)
		d := time.Since(t0)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i, err)
		}
		if err := rt.Remove(ctx, c.ID, runtime.Force()); err != nil {
			return res, fmt.Errorf("run %d: rm: %w", i, err)
		}
		if rc == nil {
			if i > 0 {
				starts = append(starts, d)
			}
			continue
		}
		f, err := rc.run(ctx, i, false)
		if err != nil {
			return res, err
		}
		dd, err := rc.run(ctx, i, true)
		if err != nil {
			return res, err
		}
		if i > 0 {
			starts, fg, detached = append(starts, d), append(fg, f), append(detached, dd)
		}
	}
	res.StartP50Ms, res.StartP90Ms = ms(percentile(starts, 50)), ms(percentile(starts, 90))
	if rc != nil {
		res.RuncP50Ms, res.RuncP90Ms = ms(percentile(fg, 50)), ms(percentile(fg, 90))
		res.RuncDetachedP50Ms, res.RuncDetachedP90Ms = ms(percentile(detached, 50)), ms(percentile(detached, 90))
	}
	log.Info("runtime start latency measured", "runs", runs)
	return res, nil
}

// runcBench runs the runc binary on a bundle whose config.json is
// embedded.OCISpec with the same settings as the embedded runs.
type runcBench struct {
	runc, bundle, state, rootfs, parent, suffix string
}

func newRuncBench(runc, tmp, rootfs, suffix string) (*runcBench, error) {
	b := &runcBench{runc: runc, bundle: filepath.Join(tmp, "bundle"), state: filepath.Join(tmp, "runc-state"),
		rootfs: rootfs, parent: "berth-bench-runc-" + suffix, suffix: suffix}
	return b, os.MkdirAll(b.bundle, 0o755)
}

// run times one runc run (detached: runc run -d, then an untimed delete).
func (b *runcBench) run(ctx context.Context, i int, detached bool) (time.Duration, error) {
	id := fmt.Sprintf("bench-%s-%d", b.suffix, i)
	args := []string{"--root", b.state, "run", "--bundle", b.bundle, id}
	if detached {
		id += "d"
		args = []string{"--root", b.state, "run", "-d", "--bundle", b.bundle, id}
	}
	spec := embedded.OCISpec(embedded.OCIParams{
		Rootfs: b.rootfs, Args: []string{"true"}, Env: []string{"PATH=/bin"}, Cwd: "/",
		Hostname: id, ReadOnly: true, CgroupPath: "/" + b.parent + "/" + id, Memory: 64 << 20, Pids: 64,
	})
	js, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(b.bundle, "config.json"), js, 0o644); err != nil {
		return 0, err
	}
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, b.runc, args...).CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("runc run: %w: %s", err, out)
	}
	if detached {
		if out, err := exec.CommandContext(ctx, b.runc, "--root", b.state, "delete", "-f", id).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("runc delete: %w: %s", err, out)
		}
	}
	return d, nil
}

// cleanup removes the parent cgroups runc's containers were created in.
func (b *runcBench) cleanup() {
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), b.parent))
	}
	_ = os.Remove(filepath.Join("/sys/fs/cgroup", b.parent))
}
