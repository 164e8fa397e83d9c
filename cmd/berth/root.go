package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, as design.md §7 fixes them.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime error: render, check, reload, store
	exitUsage   = 2 // a usage or configuration error
)

// usageError marks an error as the user's: bad flags, bad configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns an error that makes berth exit with exitUsage.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitCodeError carries an explicit exit code with an optional message.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitCodeError) Unwrap() error { return e.err }

// newRootCommand builds the whole command tree.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "Service discovery and config templating: containers → key/value store → templates → reloads",
		Long: `berth registers containers in a key/value store (embedded etcd, an etcd
cluster, or Consul), watches it, and keeps configuration files such as an
nginx config current: render, check, swap atomically, reload.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildDescription(),
	}
	root.SetVersionTemplate("berth {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	addLogFlags(root)
	root.AddCommand(
		newVersionCommand(),
		newKVCommand(),
		newRenderCommand(),
		newPlanCommand(),
		newExplainCommand(),
		newWatchCommand(),
		newDockerGenCommand(),
		newBenchCommand(),
		newTemplatesCommand(),
		newClusterCommand(),
	)
	root.AddCommand(newRuntimeCommands()...)
	root.AddCommand(newDeployCommands()...)
	return root
}

// usageArgs wraps a positional-argument check so that its failure exits
// with exitUsage.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// isCobraUsageError recognises the errors cobra itself returns for a command
// line it cannot parse before any of berth's code runs.
func isCobraUsageError(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command")
}

// execute runs the command line with the given standard streams and returns
// the process exit code.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ce exitCodeError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintln(stderr, "berth:", ce.err)
		}
		return ce.code
	}
	fmt.Fprintln(stderr, "berth:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		return exitUsage
	}
	return exitFailure
}
