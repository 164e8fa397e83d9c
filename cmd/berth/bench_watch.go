package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
	"github.com/berthd/berth/store/backend"
)

func newBenchWatchCommand() *cobra.Command {
	var (
		services, changes int
		rate              float64
		duration          time.Duration
		asJSON            bool
		sf                *storeFlags
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Measure change→file latency, its floor, and churn cost of the watch pipeline",
		Long: `Load --services instances into a store (a fresh embedded one unless
--store names another), then measure in one run:
  - change→file latency over --changes single changes, wait disabled: from
    the put to the rendered file carrying its revision;
  - the floor: the same changes through a bare store watch that writes the
    changed key to a file;
  - churn: --rate changes/s for --duration with wait = "50ms:200ms": CPU
    seconds of this process (store included when embedded), renders, and
    whether the final file equals a render of the final state; then the
    same churn with no watcher, whose CPU is the store's and the load
    generator's share;
  - the latency, render time and churn again for the template users write
    for ten instances per service under <prefix>/natural/<svc>/<id> with
    values {"host","port"}: lsdir, tree and fromJson (the "natural" figures);
  - peak RSS of the process.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			if services <= 0 || changes <= 0 || rate <= 0 || duration <= 0 {
				return usagef("--services, --changes, --rate and --duration must be positive")
			}
			dir, err := os.MkdirTemp("", "berth-bench-watch-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			url := sf.URL()
			if url == "" {
				url = "embedded://" + filepath.Join(dir, "store")
			}
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			st, err := backend.Open(cmd.Context(), url, sf.options(log)...)
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := bench.Watch(cmd.Context(), st, bench.WatchConfig{
				Services: services, Changes: changes, Rate: rate, Duration: duration, Dir: dir,
			}, quiet)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(r)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "services\t%d\n", r.Services)
			fmt.Fprintf(tw, "change→file (%d changes)\tp50 %.2f ms\tp90 %.2f ms\tp99 %.2f ms\n", r.Changes, r.P50Ms, r.P90Ms, r.P99Ms)
			fmt.Fprintf(tw, "floor (bare watch → file)\tp50 %.2f ms\t\tp99 %.2f ms\n", r.FloorP50Ms, r.FloorP99Ms)
			fmt.Fprintf(tw, "template render alone\t%.2f ms\n", r.RenderMs)
			fmt.Fprintf(tw, "churn %.0f/s for %s\t%d renders\t%.2f CPU s (%.2f without the watcher)\tfinal match %v\n", r.ChurnRate, duration, r.ChurnRenders, r.ChurnCPUS, r.ChurnFloorCPUS, r.FinalMatch)
			n := r.Natural
			fmt.Fprintf(tw, "natural template (lsdir, tree, fromJson)\tp50 %.2f ms\tp90 %.2f ms\tp99 %.2f ms\n", n.P50Ms, n.P90Ms, n.P99Ms)
			fmt.Fprintf(tw, "natural template render alone\t%.2f ms\n", n.RenderMs)
			fmt.Fprintf(tw, "natural churn\t%d renders\t%.2f CPU s\t\tfinal match %v\n", n.ChurnRenders, n.ChurnCPUS, n.FinalMatch)
			fmt.Fprintf(tw, "peak RSS\t%.1f MB\n", r.MaxRSSMB)
			return tw.Flush()
		},
	}
	sf = addStoreFlags(cmd.Flags())
	cmd.Flags().IntVar(&services, "services", 10000, "instances to load")
	cmd.Flags().IntVar(&changes, "changes", 200, "single changes to time")
	cmd.Flags().Float64Var(&rate, "rate", 1000, "churn: changes per second")
	cmd.Flags().DurationVar(&duration, "duration", 10*time.Second, "churn: how long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
