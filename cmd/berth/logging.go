package main

import (
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// addLogFlags registers the logging flags every command inherits.
func addLogFlags(root *cobra.Command) {
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().String("log-format", "text", "log format: text or json")
}

// commandLogger builds the logger the (inherited) logging flags ask for,
// writing to the command's standard error.
func commandLogger(cmd *cobra.Command) (*slog.Logger, error) {
	levelText, format := cmd.Flag("log-level").Value.String(), cmd.Flag("log-format").Value.String()
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelText)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", levelText)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}
