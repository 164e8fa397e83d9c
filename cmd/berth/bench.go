package main

import "github.com/spf13/cobra"

// newBenchCommand is the parent of the benchmark harnesses. Each measures
// against real parts and prints a table, or JSON with --json.
func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure berth against real stores, runtimes and proxies",
	}
	cmd.AddCommand(
		newBenchStoreCommand(),
		newBenchRuntimeCommand(),
		newBenchWatchCommand(),
		newBenchE2ECommand(),
		newBenchDeployCommand(),
		newBenchDockerGenCommand(),
		newBenchClusterCommand(),
	)
	return cmd
}
