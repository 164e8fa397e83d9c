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
	RuncP50Ms  float64 `json:"runc_p50_ms,omitempty"`
	RuncP90Ms  float64 `json:"runc_p90_ms,omitempty"`
	Runc       string  `json:"runc,omitempty"` // the runc binary measured
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
PATH, for "runc run -d" of a bundle with the same OCI spec (same
namespaces, capabilities, seccomp profile, masked paths and limits; a new
empty network namespace). Needs root and busybox-static. Everything it
creates (bridge, cgroups, state) is removed afterwards.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runs < 1 {
				return usagef("--runs must be at least 1")
			}
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			res, err := benchRuntime(cmd.Context(), runs, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "runs: %d\nembedded create+start: p50 %.2f ms  p90 %.2f ms\n", res.Runs, res.StartP50Ms, res.StartP90Ms)
			if res.Runc != "" {
				fmt.Fprintf(out, "runc run -d (%s): p50 %.2f ms  p90 %.2f ms\nembedded/runc p50 ratio: %.2f\n",
					res.Runc, res.RuncP50Ms, res.RuncP90Ms, res.StartP50Ms/res.RuncP50Ms)
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
	tmp, err := os.MkdirTemp("", "berth-bench-")
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
	if _, err := rt.Images().Import(ctx, rootfs, "bench:busybox"); err != nil {
		return res, err
	}
	spec := runtime.Spec{Image: "bench:busybox", Cmd: []string{"true"}, Memory: 64 << 20, PidsLimit: 64}
	var starts []time.Duration
	for i := 0; i <= runs; i++ { // run 0 warms up
		t0 := time.Now()
		c, err := rt.Run(ctx, spec)
		d := time.Since(t0)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i, err)
		}
		if err := rt.Remove(ctx, c.ID, runtime.Force()); err != nil {
			return res, fmt.Errorf("run %d: rm: %w", i, err)
		}
		if i > 0 {
			starts = append(starts, d)
		}
	}
	res.StartP50Ms, res.StartP90Ms = ms(percentile(starts, 50)), ms(percentile(starts, 90))
	log.Info("embedded runtime measured", "runs", runs)

	runc, err := exec.LookPath("runc")
	if err != nil {
		return res, nil
	}
	res.Runc = runc
	rd, err := benchRunc(ctx, runc, tmp, rootfs, suffix, runs)
	if err != nil {
		return res, fmt.Errorf("runc: %w", err)
	}
	res.RuncP50Ms, res.RuncP90Ms = ms(percentile(rd, 50)), ms(percentile(rd, 90))
	return res, nil
}

// benchRunc times `runc run -d` (create+start, returning once the process
// runs) of a bundle whose config.json is embedded.OCISpec with the same
// settings, deleting each container untimed.
func benchRunc(ctx context.Context, runc, tmp, rootfs, suffix string, runs int) ([]time.Duration, error) {
	bundle := filepath.Join(tmp, "bundle")
	state := filepath.Join(tmp, "runc-state")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		return nil, err
	}
	parent := "berth-bench-runc-" + suffix
	defer func() {
		for _, d := range []string{"/sys/fs/cgroup/unified/" + parent, "/sys/fs/cgroup/" + parent} {
			_ = os.Remove(d)
		}
		ents, _ := os.ReadDir("/sys/fs/cgroup")
		for _, e := range ents {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), parent))
		}
	}()
	var ds []time.Duration
	for i := 0; i <= runs; i++ {
		id := fmt.Sprintf("bench-%s-%d", suffix, i)
		spec := embedded.OCISpec(embedded.OCIParams{
			Rootfs: rootfs, Args: []string{"true"}, Env: []string{"PATH=/bin"}, Cwd: "/",
			Hostname: id, ReadOnly: true, CgroupPath: "/" + parent + "/" + id, Memory: 64 << 20, Pids: 64,
		})
		b, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
			return nil, err
		}
		run := exec.CommandContext(ctx, runc, "--root", state, "run", "-d", "--bundle", bundle, id)
		t0 := time.Now()
		out, err := run.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("runc run: %w: %s", err, out)
		}
		if out, err := exec.CommandContext(ctx, runc, "--root", state, "delete", "-f", id).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("runc delete: %w: %s", err, out)
		}
		if i > 0 {
			ds = append(ds, d)
		}
	}
	return ds, nil
}
