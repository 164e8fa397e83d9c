package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
)

func newBenchDockerGenCommand() *cobra.Command {
	var (
		wait, against, tmpl string
		starts, running     int
		gap                 time.Duration
		asJSON              bool
	)
	cmd := &cobra.Command{
		Use:   "dockergen",
		Short: "docker-gen mode with -wait against the Docker Engine: start→file latency, renders, peak RSS",
		Long: `Run "berth docker-gen -watch -wait WAIT -only-exposed" (and, with
--against, another docker-gen binary side by side on the same starts)
against the Docker Engine DOCKER_HOST names, start --running containers,
then --starts containers one at a time, each once the previous one is in
every file and --gap has passed, and report per tool: p50/p90/max from the
start returning to its host name in the file, renders (-notify runs)
during the starts, and peak RSS (VmHWM) at the end. Needs busybox-static
(the containers' image is imported from it); everything it creates is
removed afterwards.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			if starts < 1 || running < 0 || gap < 0 {
				return usagef("--starts must be positive, --running and --gap not negative")
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "berth-bench-dockergen-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			cfg := bench.DockerGenConfig{Tools: [][]string{{self, "docker-gen"}}, Names: []string{"berth"},
				Wait: wait, Starts: starts, Gap: gap, Running: running, Template: tmpl, Dir: dir}
			if against != "" {
				cfg.Tools, cfg.Names = append(cfg.Tools, []string{against}), append(cfg.Names, against)
			}
			res, err := bench.DockerGen(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(res)
			}
			fmt.Fprintf(w, "wait %s, %d starts %s apart, %d running before\n", res.Wait, res.Starts, gap, res.Running)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "tool\tp50 ms\tp90 ms\tmax ms\trenders\tpeak RSS MB")
			for _, t := range res.Tools {
				fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%d\t%.1f\n", t.Name, t.P50Ms, t.P90Ms, t.MaxMs, t.Renders, t.PeakRSSMB)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&wait, "wait", "500ms:2s", "docker-gen's -wait")
	f.IntVar(&starts, "starts", 50, "containers started one at a time")
	f.IntVar(&running, "running", 0, "containers started before the measured starts")
	f.DurationVar(&gap, "gap", 300*time.Millisecond, "pause after a start is in every file")
	f.StringVar(&against, "against", "", "another docker-gen binary to run side by side (e.g. docker-gen itself)")
	f.StringVar(&tmpl, "template", "", "docker-gen template to render (default: one server_name line per VIRTUAL_HOST)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
