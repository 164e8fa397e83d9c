// Package cli is docker-gen's command line: its flags, parsed the way
// docker-gen parses them (Go's flag package, single dash), turned into
// configurations that dockergen runs on the runner. `berth docker-gen`
// and the small berth-docker-gen binary (which links none of the daemon,
// so its memory is about docker-gen's) both call Run.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dockergen"
	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime/docker"
)

// Help is the command's long description.
const Help = `A drop-in for docker-gen: the same flags (single dash, as docker-gen
parses them) and TOML configuration, the docker-gen template dialect, and
berth's pipeline underneath: -check "nginx -t -c {{.src}}" before the
swap, rollback when notify fails, a notify timeout, one Docker inspection
per event instead of a full listing, reconnection with resync, and no exit
on template or notify errors while watching. Without dest the output goes
to standard output (one render).

-wait min:max counts only events that change the containers a template
sees (an event about a container its filters leave out, or a signal,
does not restart the quiet window). A failed render is retried with
backoff; the destination keeps its last good output meanwhile.

SIGHUP re-renders every configuration, as with docker-gen, and unlike
docker-gen also reads the templates again first; an edited template is
also re-read once its file has gone quiet, so it takes effect without a
restart (one that no longer parses is logged and its previous version
kept). A Docker Engine that cannot be reached or
refuses access is retried with backoff while watching; the destinations
keep their last output meanwhile.`

// Env is where Run writes and how it logs.
type Env struct {
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
	Version        string // what -version prints
}

// UsageError marks an error as the user's (bad flags or configuration):
// the command exits with its usage status, not its failure status.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// Run parses docker-gen's arguments and runs them: until ctx ends when
// watching, else one render. -h prints the flags to env.Stderr and
// returns nil.
func Run(ctx context.Context, env Env, args []string) error {
	f := &flags{}
	fs := f.flagSet()
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "Usage: berth docker-gen [options] template [dest]")
		fmt.Fprintln(env.Stderr, "\nGenerate files from docker container meta-data (docker-gen's flags and templates)\n\nOptions:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return UsageError{err}
	}
	return f.run(ctx, env, fs.Args())
}

// multiFlag is a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// flags are docker-gen's command-line flags, parsed the way
// docker-gen parses them (Go's flag package: -watch, -notify "cmd"), so a
// deployment switches by changing the binary name.
type flags struct {
	watch, keepBlank, onlyExposed, onlyPublished, includeStopped, tlsVerify, version bool
	notifyOutput                                                                     bool
	wait, notify, endpoint, tlsCert, tlsKey, tlsCA, check                            string
	interval, notifySignal                                                           int
	notifyTimeout                                                                    time.Duration
	configs, containerFilters, eventFilters, notifyFilters                           multiFlag
	notifySighup, notifyContainer                                                    multiFlag
}

func (f *flags) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("berth docker-gen", flag.ContinueOnError)
	fs.BoolVar(&f.watch, "watch", false, "watch Docker events and re-render on changes")
	fs.StringVar(&f.wait, "wait", "", "debounce changes: min[:max] (max defaults to 4×min)")
	fs.StringVar(&f.notify, "notify", "", "command to run (sh -c) after the destination changed")
	fs.BoolVar(&f.notifyOutput, "notify-output", false, "log the output (stdout and stderr) of the notify command")
	fs.Var(&f.notifySighup, "notify-sighup", "send SIGHUP to this container (name or ID) after the destination changed, as docker kill -s HUP (repeatable)")
	fs.Var(&f.notifyContainer, "notify-container", "send -notify-signal to this container (name or ID) after the destination changed (repeatable)")
	fs.IntVar(&f.notifySignal, "notify-signal", int(syscall.SIGHUP), "signal number for -notify-container and -notify-filter; -1 restarts the containers instead")
	fs.Var(&f.notifyFilters, "notify-filter", "docker ps filter key=value selecting running containers to send -notify-signal (repeatable, ANDed)")
	fs.BoolVar(&f.onlyExposed, "only-exposed", false, "only containers with exposed ports")
	fs.BoolVar(&f.onlyPublished, "only-published", false, "only containers with published ports")
	fs.BoolVar(&f.includeStopped, "include-stopped", false, "include stopped containers")
	fs.Var(&f.containerFilters, "container-filter", "docker ps filter key=value (repeatable, ANDed)")
	fs.Var(&f.eventFilters, "event-filter", "docker events filter key=value (accepted: berth always follows start, stop, die, health_status, connect, disconnect)")
	fs.IntVar(&f.interval, "interval", 0, "re-render every N seconds and always notify")
	fs.BoolVar(&f.keepBlank, "keep-blank-lines", false, "keep blank lines in the output")
	fs.Var(&f.configs, "config", "docker-gen TOML configuration file (repeatable)")
	fs.StringVar(&f.endpoint, "endpoint", "", "Docker endpoint (unix:///path or tcp://host:port; default DOCKER_HOST)")
	fs.StringVar(&f.tlsCert, "tlscert", "", "client certificate for tcp:// endpoints")
	fs.StringVar(&f.tlsKey, "tlskey", "", "client key for tcp:// endpoints")
	fs.StringVar(&f.tlsCA, "tlscacert", "", "CA certificate for tcp:// endpoints")
	fs.BoolVar(&f.tlsVerify, "tlsverify", false, "verify the server certificate (with -tlscacert)")
	fs.BoolVar(&f.version, "version", false, "print the version")
	// berth's additions.
	fs.StringVar(&f.check, "check", "", "berth: command run on the staged file ({{.src}}) before it replaces the destination, e.g. 'nginx -t -c {{.src}}'")
	fs.DurationVar(&f.notifyTimeout, "notify-timeout", render.DefaultTimeout, "berth: timeout of -check and -notify")
	return fs
}

func (f *flags) run(ctx context.Context, env Env, args []string) error {
	if f.version {
		_, err := fmt.Fprintf(env.Stdout, "berth docker-gen %s\n", env.Version)
		return err
	}
	for _, ef := range f.eventFilters {
		if k, _, ok := strings.Cut(ef, "="); !ok || (k != "event" && k != "type") {
			return usagef("-event-filter %q: want event=NAME or type=NAME", ef)
		}
	}
	log := env.Logger
	confs, stdout, err := f.configurations(args)
	if err != nil {
		return err
	}
	if len(f.configs) > 0 && (f.notify != "" || f.notifyOutput || len(f.notifySighup)+len(f.notifyContainer)+len(f.notifyFilters) > 0) {
		// docker-gen ignores them too; a deployment's command line keeps working.
		log.Warn("-notify, -notify-output, -notify-sighup, -notify-container and -notify-filter are ignored with -config: set notifycmd, notifyoutput, notifycontainers, notifycontainersfilter and notifycontainerssignal in the [[config]] sections")
	}
	cfg := docker.Config{Host: f.endpoint, Logger: log}
	if f.tlsCert != "" || f.tlsKey != "" || (f.tlsVerify && f.tlsCA != "") {
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = f.tlsCA, f.tlsCert, f.tlsKey
	}
	// SIGHUP regenerates; caught from here on, so one sent while Docker is
	// still being reached does not end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ongoing := false
	for _, c := range confs {
		ongoing = ongoing || (c.DockerGen != nil && (c.DockerGen.Watch || c.DockerGen.Interval > 0))
	}
	rt, err := connectDocker(ctx, cfg, log, ongoing && !stdout)
	if err != nil {
		return err
	}
	defer rt.Close()
	global := dockergen.Filters{OnlyExposed: f.onlyExposed, OnlyPublished: f.onlyPublished, IncludeStopped: f.includeStopped}
	if stdout {
		return printOnce(ctx, env.Stdout, rt, confs[0], global)
	}
	renderer := render.New(render.WithLogger(log), render.WithCommander(dockergen.NotifyOutput(render.Exec{}, log, confs)))
	g, err := dockergen.New(rt, renderer, log, confs, global)
	if err != nil {
		return UsageError{err}
	}
	// SIGHUP → regenerate, until Run returns.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	regenerate := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-hup:
				select {
				case regenerate <- struct{}{}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	})
	if err := g.Run(ctx, regenerate); err != nil {
		return err
	}
	return nil
}

// configurations are the -config files' sections, or the one the command
// line describes; stdout says the output goes to standard output.
func (f *flags) configurations(args []string) ([]config.Template, bool, error) {
	if len(f.configs) > 0 {
		if len(args) > 0 {
			return nil, false, usagef("give either -config or template [dest], not both")
		}

		var all []config.Template
		for _, file := range f.configs {
			ts, err := config.LoadDockerGen(file, "")
			if err != nil {
				return nil, false, UsageError{err}
			}
			all = append(all, ts...)
		}
		if err := config.Validate(all); err != nil {
			return nil, false, UsageError{err}
		}
		return all, false, nil
	}
	if len(args) < 1 || len(args) > 2 {
		return nil, false, usagef("usage: berth docker-gen [flags] template [dest]")
	}
	wait, err := config.ParseWait(f.wait)
	if err != nil {
		return nil, false, usagef("-wait: %v", err)
	}
	filters, err := filterFlags("-container-filter", f.containerFilters)
	if err != nil {
		return nil, false, err
	}
	notifyFilters, err := filterFlags("-notify-filter", f.notifyFilters)
	if err != nil {
		return nil, false, err
	}
	// As docker-gen: -notify-sighup, then -notify-container (which wins for
	// a container named by both).
	notifyContainers := map[string]int{}
	for _, c := range f.notifySighup {
		notifyContainers[c] = int(syscall.SIGHUP)
	}
	for _, c := range f.notifyContainer {
		notifyContainers[c] = f.notifySignal
	}
	t := config.Template{
		Name: args[0], Src: args[0], Origin: "command line",
		Options: dialect.Options{Dialect: dialect.DockerGen, KeepBlankLines: f.keepBlank, Prefix: records.DefaultPrefix},
		Wait:    wait,
		// AllowEmpty: docker-gen writes whatever the template gives,
		// empty included (a listing of no containers).
		Spec: render.Spec{Reload: f.notify, Check: f.check, Timeout: f.notifyTimeout, AllowEmpty: true},
		DockerGen: &config.DockerGenExtras{
			Watch: f.watch, ContainerFilter: filters, Interval: time.Duration(f.interval) * time.Second,
			NotifyOutput: f.notifyOutput, NotifyContainers: notifyContainers,
		},
	}
	if len(notifyFilters) > 0 {
		t.DockerGen.NotifyContainersFilter, t.DockerGen.NotifyContainersSignal = notifyFilters, f.notifySignal
	}
	if len(args) == 2 {
		t.Spec.Name, t.Spec.Dest = args[0], args[1]
		return []config.Template{t}, false, nil
	}
	if f.watch || f.interval > 0 || f.notify != "" || f.check != "" || len(notifyContainers) > 0 || len(notifyFilters) > 0 {
		return nil, false, usagef("without dest the output goes to standard output once: -watch, -interval, -notify, -notify-sighup, -notify-container, -notify-filter and -check need a dest")
	}
	return []config.Template{t}, true, nil
}

// printOnce renders one configuration to standard output.
func printOnce(ctx context.Context, w io.Writer, rt *docker.Runtime, t config.Template, global dockergen.Filters) error {
	out, err := dockergen.RenderOnce(ctx, rt, t, global)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// filterFlags turns repeated key=value flags into docker's filter map.
func filterFlags(flagName string, values []string) (map[string][]string, error) {
	filters := map[string][]string{}
	for _, v := range values {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, usagef("%s %q: want key=value", flagName, v)
		}
		filters[k] = append(filters[k], val)
	}
	return filters, nil
}

// connectDocker connects to the Docker Engine. With retry (watching, or
// rendering at an interval) an unreachable or refusing engine is retried
// with backoff until ctx ends, each failure logged, and the destinations
// keep their last output meanwhile; without, the first failure is returned.
func connectDocker(ctx context.Context, cfg docker.Config, log *slog.Logger, retry bool) (*docker.Runtime, error) {
	bo := backoff.New(250*time.Millisecond, 10*time.Second)
	for {
		rt, err := docker.New(ctx, cfg)
		if err == nil || !retry {
			return rt, err
		}
		d := bo.Next()
		log.Error("cannot use the Docker Engine; retrying, destinations keep their last output", "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			return nil, err
		}
	}
}
