package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	execDockerGenCompanion(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
