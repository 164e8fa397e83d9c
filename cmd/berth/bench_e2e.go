package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
)

func newBenchE2ECommand() *cobra.Command {
	var runs int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "e2e",
		Short: "Time from berth run to nginx serving the container, and from berth stop to its removal",
		Long: `berth bench e2e runs the whole pipeline as berth up does, in one process:
the embedded store, the embedded runtime (a bridge of its own, busybox
httpd containers), the registrar, the shipped nginx template (wait
disabled, no drain) and a real nginx on a free 127.0.0.1 port. Containers
are started one after another through the daemon API (as berth run does),
each with its own VIRTUAL_HOST, until --runs are up; then stopped one after
another (as berth stop does).

  up:   from the API's run call returning to nginx answering 200 for the
        container's host name;
  down: from the API's stop call returning to nginx answering 503 for it
        (its server gone from the configuration and nginx reloaded).

Each also reports when the new nginx.conf was in place (rendered,
checked with nginx -t, swapped): the rest is nginx's reload. nginx is
reloaded with SIGHUP to its master, as "nginx -s reload" does after
parsing the whole configuration once more.

Needs root, nginx and busybox-static. Everything it creates is removed.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runs < 1 {
				return usagef("--runs must be at least 1")
			}
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			res, err := bench.E2E(cmd.Context(), runs, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "runs: %d\nup   (run returned → nginx serves it):  p50 %.1f ms  p99 %.1f ms  (new nginx.conf in place: p50 %.1f ms)\ndown (stop returned → nginx drops it): p50 %.1f ms  p99 %.1f ms  (new nginx.conf in place: p50 %.1f ms)\nnginx -t alone (median run's configuration): %.1f ms\n",
				res.Runs, res.UpP50Ms, res.UpP99Ms, res.UpConfP50Ms, res.DownP50Ms, res.DownP99Ms, res.DownConfP50Ms, res.NginxCheckMs)
			return nil
		},
	}
	cmd.Flags().IntVar(&runs, "runs", 50, "containers to start and stop")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
