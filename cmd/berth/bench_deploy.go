package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
)

func newBenchDeployCommand() *cobra.Command {
	var replicas int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Blue-green deploys and a rollback under load through nginx: time to switch, failed requests",
		Long: `berth bench deploy runs berth up's parts in one process (embedded store
and runtime, registrar with berth up's 2 s drain, the shipped nginx template, a real
nginx on a free 127.0.0.1 port, the deploy service behind the daemon API),
deploys demo:v1 (--replicas busybox httpd containers that serve their
version), puts a continuous load through nginx (keep-alive and new
connections), then deploys v2, rolls back, and deploys a v3 whose health
check fails.

  deploy_s: deploy v2 called → every new container in nginx;
  switch_s: deploy v2 called → the old containers gone;
  requests, failed_requests: during the steps (connection errors, 5xx).

Needs root, nginx and busybox-static. Everything it creates is removed.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if replicas < 1 {
				return usagef("--replicas must be at least 1")
			}
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			res, err := bench.Deploy(cmd.Context(), replicas, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "replicas: %d\ndeploy v1 → v2: serving after %.2f s, old gone after %.2f s\nrequests: %d, failed: %d\n",
				res.Replicas, res.DeploySec, res.SwitchSec, res.Requests, res.FailedRequests)
			for _, s := range res.Steps {
				fmt.Fprintf(out, "  %-34s revision %d %-9s %.2f s, then served %v\n", s.Name, s.Revision, s.Outcome, s.Seconds, s.After)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 3, "containers per revision")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
