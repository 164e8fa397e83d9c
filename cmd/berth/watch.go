package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/watcher"
)

// watchOptions are the flags of berth watch.
type watchOptions struct {
	renderFlags
	once       bool
	cpuProfile string
	memProfile string
}

// renderFlags are the flags berth up and berth watch share: where the
// templates and the store are, and the default pacing of the renders.
type renderFlags struct {
	sources     *templateFlags
	store       *storeFlags
	wait        string
	minInterval time.Duration
	resync      time.Duration
}

// defaultWait is the --wait quiescence, or def when the flag is not set.
func (f *renderFlags) defaultWait(def config.Wait) (config.Wait, error) {
	if f.wait == "" {
		return def, nil
	}
	w, err := config.ParseWait(f.wait)
	if err != nil {
		return config.Wait{}, usagef("--wait: %v", err)
	}
	return w, nil
}

func newWatchCommand() *cobra.Command {
	o := &watchOptions{}
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Keep templates rendered from a store as it changes (the sidecar)",
		Long: `Watch the store prefixes the templates read and re-render them when the
data or the template files change: one store watch per prefix however many
templates read it; a template renders once all its prefixes are synced;
bursts of changes are debounced (wait = "min:max"); a failed render, check
or reload keeps the last good file and is retried with backoff.

SIGHUP reloads the configuration (unchanged templates and watches are
kept); SIGTERM or SIGINT stops. --once renders after the first sync and
exits: 0 rendered or unchanged, 1 a template failed, 2 usage or
configuration error.

` + storeCommandHelp,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	o.sources = addTemplateFlags(f)
	o.store = addStoreCommandFlags(f)
	f.BoolVar(&o.once, "once", false, "render once after the first sync and exit")
	f.StringVar(&o.wait, "wait", "", `default quiescence "min[:max]" for templates without their own (e.g. 100ms:1s)`)
	f.DurationVar(&o.minInterval, "min-reload-interval", 0, "reload budget: at most one change applied per template in this interval")
	f.DurationVar(&o.resync, "resync", watcher.DefaultResync, "re-list every watched prefix this often as a backstop (0: never)")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof bin/berth FILE)")
	f.StringVar(&o.memProfile, "memprofile", "", "write a heap profile to this file when the run ends (in use as of the run's last collection, and every allocation of the run)")
	return cmd
}

func (o *watchOptions) run(cmd *cobra.Command) error {
	log, err := commandLogger(cmd)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return usagef("--cpuprofile: %v", err)
		}
		defer stop()
	}
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return usagef("--memprofile: %v", err)
		}
		defer func() {
			// In use: as of the last collection of the run, not one
			// forced now, after the watches have stopped.
			if err := pprof.WriteHeapProfile(f); err != nil {
				log.Error("writing the heap profile", "file", o.memProfile, "err", err)
			}
			f.Close()
		}()
	}
	templates, files, err := o.load()
	if err != nil {
		return err
	}
	defWait, err := o.defaultWait(config.Wait{})
	if err != nil {
		return err
	}
	o.store.useConfig(files)
	ctx := cmd.Context()
	st, err := o.store.open(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()

	ropts := []runner.Option{
		runner.WithLogger(log),
		runner.WithDefaultWait(defWait),
		runner.WithMinReloadInterval(o.minInterval),
		runner.WithMirrorOptions(watcher.WithResync(o.resync)),
		runner.WithCerts(certs.New(certDir(o.store.stateDir, files), certs.WithLogger(log))), // .Certs as berth up reads them
		runner.WithEnv(acmeEnv(o.store.stateDir, files)),                                     // BERTH_ACME_CHALLENGE as berth up gives it
	}
	// The first berth.toml's [catalog]: consul-template's service, nodes ...
	cat, err := catalogSources(ctx, "", files, log)
	if err != nil {
		return err
	}
	if cat != nil {
		ropts = append(ropts, cat)
	}
	r := runner.New(st, render.New(render.WithLogger(log)), ropts...)
	if o.once {
		deferGC(oneShotHeap) // renders once and exits
		results, err := r.Once(ctx, templates)
		if err != nil {
			return exitCodeError{exitFailure, err}
		}
		for _, res := range results {
			if res.Err != nil {
				return exitCodeError{exitFailure, errors.New("one or more templates failed")}
			}
		}
		return nil
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, templates) }()
	log.Info("watching", "templates", len(templates), "store", o.store.URL())
	for {
		select {
		case err := <-done:
			if err != nil {
				return exitCodeError{exitFailure, err}
			}
			log.Info("stopped")
			return nil
		case <-hup:
			ts, _, err := o.load()
			if err == nil {
				err = r.Update(ctx, ts)
			}
			if err != nil {
				log.Error("configuration reload failed; keeping the running configuration", "err", err)
				continue
			}
			log.Info("configuration reloaded", "templates", len(ts))
		}
	}
}

// load reads the templates; every one needs a destination file.
func (o *watchOptions) load() ([]config.Template, []*config.File, error) {
	templates, files, err := o.sources.load()
	if err != nil {
		return nil, nil, err
	}
	for _, t := range templates {
		if t.Stdout() {
			return nil, nil, usagef("%s: no destination: berth watch writes files (use berth render --stdout to print)", t.Origin)
		}
	}
	return templates, files, nil
}
