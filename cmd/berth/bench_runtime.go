package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
	"github.com/berthd/berth/runtime/embedded"
)

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
			res, err := bench.Runtime(cmd.Context(), runs, log)
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
