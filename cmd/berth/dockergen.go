package main

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/dockergen/cli"
)

func newDockerGenCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "docker-gen [flags] template [dest]",
		Short:              "Run docker-gen's templates and command lines against a Docker Engine",
		Long:               cli.Help,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			err = cli.Run(cmd.Context(), cli.Env{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), Logger: log, Version: buildVersion()}, args)
			var ue cli.UsageError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &ue):
				return usageError{ue.Err}
			}
			return exitCodeError{exitFailure, err}
		},
	}
}

// dockerGenCompanion is the docker-gen-only binary (cmd/berth-docker-gen)
// that `berth docker-gen` becomes when it is installed next to berth, as
// make build does: it links none of the daemon, so docker-gen mode uses
// about docker-gen's memory instead of berth's (most of berth's resident
// memory is the start-up of packages docker-gen mode never uses).
const dockerGenCompanion = "berth-docker-gen"

// execDockerGenCompanion replaces the process with the companion when
// args are a `docker-gen` command line (berth docker-gen ...) and the
// companion is next to this binary. It returns only when it cannot; berth
// then runs docker-gen mode itself. The process keeps its pid, so
// supervisors, notify commands and signals see no difference.
func execDockerGenCompanion(args []string) {
	if len(args) == 0 || args[0] != "docker-gen" {
		return
	}
	self, err := os.Executable()
	if err != nil {
		return
	}
	companion := filepath.Join(filepath.Dir(self), dockerGenCompanion)
	if _, err := os.Stat(companion); err != nil {
		return
	}
	_ = syscall.Exec(companion, append([]string{"berth docker-gen"}, args[1:]...), os.Environ())
}
