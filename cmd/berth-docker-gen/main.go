// Command berth-docker-gen is berth's docker-gen mode in a binary of its
// own: docker-gen's flags and templates on berth's pipeline, linking none
// of the daemon (no embedded etcd, container runtime or store backends),
// so its memory is about docker-gen's. `berth docker-gen` runs it when it
// is installed next to berth; it can also replace a docker-gen binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/berthd/berth/dockergen/cli"
	"github.com/berthd/berth/internal/buildinfo"
)

// version is set at link time (-ldflags "-X main.version=..."), as berth's.
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := cli.Env{
		Stdout: os.Stdout, Stderr: os.Stderr,
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Version: buildinfo.Version(version),
	}
	err := cli.Run(ctx, env, os.Args[1:])
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "berth docker-gen:", err)
	if errors.As(err, new(cli.UsageError)) {
		os.Exit(2)
	}
	os.Exit(1)
}
