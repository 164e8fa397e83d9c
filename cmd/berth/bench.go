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
	)
	return cmd
}

// offMain runs fn off the main goroutine and waits for it. Benchmarks
// that start containers need it: containerinit locks the main goroutine
// to the main thread (every wake-up would wait for that thread), and the
// daemon runs containers from its API handlers, not from main.
func offMain[T any](fn func() (T, error)) (T, error) {
	var (
		res T
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = fn()
	}()
	<-done
	return res, err
}
