package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
)

// runtimeBenchResult is the JSON of berth bench runtime; its fields are
// part of berth's interface (compared across runs).
type runtimeBenchResult struct {
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

func newBenchRuntimeCommand() *cobra.Command {
	var runs int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "Container start latency: embedded runtime vs runc run of an equivalent bundle",
		Long: `berth bench runtime measures create+start until the container's process
runs, for the embedded runtime (bridge network, overlay root from an
imported busybox image, Docker's confinement) and, when a runc binary is on
PATH, for "runc run" of a bundle with the same OCI spec (same namespaces,
capabilities, seccomp profile, masked paths and limits; a new empty
network namespace), both in the foreground (runc_p50_ms: the whole
invocation, as the runc CLI starts containers) and detached (runc run -d,
returning once the process runs). Runs alternate between the runtimes so
that load affects them alike. Containers' init is the berth-init companion
next to berth when there is one (init_binary in the JSON), else berth
itself. Needs root and busybox-static. Everything it creates (bridge,
cgroups, state) is removed afterwards.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runs < 1 {
				return usagef("--runs must be at least 1")
			}
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			res, err := offMain(func() (runtimeBenchResult, error) { return benchRuntime(cmd.Context(), runs, log) })
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			initBy := "berth re-executing itself (no " + embedded.InitBinaryName + " next to it)"
			if res.InitBinary != "" {
				initBy = res.InitBinary
			}
			fmt.Fprintf(out, "runs: %d\ncontainer init: %s\nembedded create+start: p50 %.2f ms  p90 %.2f ms\n", res.Runs, initBy, res.StartP50Ms, res.StartP90Ms)
			if res.Runc != "" {
				fmt.Fprintf(out, "runc run (%s): p50 %.2f ms  p90 %.2f ms\nrunc run -d: p50 %.2f ms  p90 %.2f ms\nembedded/runc run p50 ratio: %.2f (detached: %.2f)\n",
					res.Runc, res.RuncP50Ms, res.RuncP90Ms, res.RuncDetachedP50Ms, res.RuncDetachedP90Ms,
					res.StartP50Ms/res.RuncP50Ms, res.StartP50Ms/res.RuncDetachedP50Ms)
			} else {
				fmt.Fprintln(out, "runc: not found on PATH, not measured")
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&runs, "runs", 50, "containers to start per runtime")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func benchRuntime(ctx context.Context, runs int, log *slog.Logger) (runtimeBenchResult, error) {
	res := runtimeBenchResult{Runs: runs}
	tmp, err := os.MkdirTemp("", "berth-bench-runtime-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := embedded.BusyboxRootfs(rootfs); err != nil {
		return res, err
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 254, b[0], 0}), 24)
	rt, err := embedded.New(ctx, embedded.WithStateDir(filepath.Join(tmp, "state")),
		embedded.WithBridge("bbench"+suffix, subnet), embedded.WithCgroupParent("berth-bench-"+suffix), embedded.WithLogger(log))
	if err != nil {
		return res, err
	}
	defer func() {
		_ = rt.Close()
		_ = rt.Network().RemoveBridge()
	}()
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
