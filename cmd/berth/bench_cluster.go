package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
)

func newBenchClusterCommand() *cobra.Command {
	var (
		hosts, changes int
		renderers      []int
		ttl            time.Duration
		asJSON         bool
	)
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Measure many hosts on one etcd cluster: remote latency, store load per renderer with and without dedup, healing",
		Long: `Start an etcd cluster of --hosts members on loopback (Debian's etcd-server),
one host per member (a store client of that member alone), then measure:
  - change → file p50/p99 on another host than the writer's, against the
    writer's own (--changes changes);
  - the gRPC messages the members receive and send per change for 1, 5
    and 20 renderers of one template (--renderers), with and without
    dedup (followers taking the outputs from the leader peer to peer, on
    loopback), the writer's own and the idle traffic subtracted;
  - a partition of the dedup leader's host (its member stopped for
    --ttl + 2 s, a change made meanwhile): the time from the heal until
    its file is current.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hosts < 2 || changes <= 0 || len(renderers) == 0 || ttl <= 0 {
				return usagef("--hosts must be at least 2; --changes, --renderers and --ttl must be set")
			}
			dir, err := os.MkdirTemp("", "berth-bench-cluster-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			r, err := bench.Cluster(cmd.Context(), bench.ClusterConfig{
				Hosts: hosts, Changes: changes, Renderers: renderers, TTL: ttl, Dir: dir,
			}, quiet)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(r)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "hosts\t%d\n", r.Hosts)
			fmt.Fprintf(tw, "change→file, writer's host\tp50 %.2f ms\n", r.LocalP50Ms)
			fmt.Fprintf(tw, "change→file, another host\tp50 %.2f ms\tp99 %.2f ms\n", r.RemoteP50Ms, r.RemoteP99Ms)
			for i, n := range r.Renderers {
				fmt.Fprintf(tw, "store messages per change, %d renderers\t%.1f\twith dedup %.1f\n", n, r.StoreOpsPerChange[i], r.StoreOpsPerChangeDedup[i])
			}
			fmt.Fprintf(tw, "convergence after a partition heals\t%.0f ms\n", r.HealConvergeMs)
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&hosts, "hosts", 3, "etcd members, one host each")
	cmd.Flags().IntVar(&changes, "changes", 50, "timed changes per figure")
	cmd.Flags().IntSliceVar(&renderers, "renderers", []int{1, 5, 20}, "renderer counts of the store-load figures")
	cmd.Flags().DurationVar(&ttl, "ttl", 5*time.Second, "the dedup lease (a partition lasts ttl + 2s)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
