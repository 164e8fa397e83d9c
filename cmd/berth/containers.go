package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
)

// addHostFlag gives a container command its -H/--host flag and returns
// how to get a client for the daemon it names (flag, else $BERTH_HOST,
// else the default socket).
func addHostFlag(cmd *cobra.Command) func() *api.Client {
	host := cmd.Flags().StringP("host", "H", "", "daemon socket (default $BERTH_HOST or "+api.DefaultSocket+")")
	return func() *api.Client {
		h := *host
		if h == "" {
			h = os.Getenv("BERTH_HOST")
		}
		if h == "" {
			h = api.DefaultSocket
		}
		return api.NewClient(h)
	}
}

// daemonError maps the daemon's errors to exit codes: a command missing
// from the image exits 127 as with docker, bad input exits 2.
func daemonError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, runtime.ErrCommandNotFound):
		return exitCodeError{127, err}
	case errors.Is(err, runtime.ErrInvalid):
		return usageError{err}
	}
	return err
}

// newContainerCommands returns run, ps, start, stop, kill, restart, rm,
// logs, inspect, exec and events.
func newContainerCommands() []*cobra.Command {
	return []*cobra.Command{
		newRunCommand(), newPsCommand(), newStartCommand(), newStopCommand(), newKillCommand(),
		newRestartCommand(), newRmCommand(), newLogsCommand(), newInspectCommand(), newExecCommand(),
		newEventsCommand(),
	}
}

// runFlags are docker run's flags that berth supports.
type runFlags struct {
	name, workdir, user, hostname, network, restart, entrypoint, memory, stopSignal string
	env, labels, volumes, publish                                                   []string
	readOnly, detach, rm                                                            bool
	cpus                                                                            float64
	pids                                                                            int64
	healthCmd                                                                       string
	healthInterval, healthTimeout, healthStart                                      time.Duration
	healthRetries                                                                   int
}

// spec turns the flags, image and command into a runtime.Spec.
func (f *runFlags) spec(cmd *cobra.Command, args []string) (runtime.Spec, error) {
	s := runtime.Spec{
		Name: f.name, Image: args[0], Cmd: args[1:], WorkingDir: f.workdir, User: f.user,
		Hostname: f.hostname, Network: f.network, ReadOnly: f.readOnly, CPUs: f.cpus, PidsLimit: f.pids,
		StopSignal: f.stopSignal,
	}
	if cmd.Flags().Changed("entrypoint") {
		s.Entrypoint = []string{f.entrypoint}
		if f.entrypoint != "" {
			s.Entrypoint = strings.Fields(f.entrypoint)
		}
	}
	for _, e := range f.env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		s.Env = append(s.Env, e)
	}
	if len(f.labels) > 0 {
		s.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			s.Labels[k] = v
		}
	}
	if f.memory != "" {
		m, err := units.RAMInBytes(f.memory)
		if err != nil || m <= 0 {
			return s, usagef("invalid memory value %q: want a size such as 64m or 1g", f.memory)
		}
		s.Memory = m
	}
	for _, v := range f.volumes {
		m, err := parseVolume(v)
		if err != nil {
			return s, err
		}
		s.Volumes = append(s.Volumes, m)
	}
	for _, p := range f.publish {
		port, err := parsePublish(p)
		if err != nil {
			return s, err
		}
		s.Publish = append(s.Publish, port)
	}
	if f.restart != "" {
		name, n, _ := strings.Cut(f.restart, ":")
		s.Restart.Name = name
		if n != "" {
			max, err := strconv.Atoi(n)
			if err != nil || max < 0 || name != "on-failure" {
				return s, usagef("--restart %q: want no, always, unless-stopped or on-failure[:N]", f.restart)
			}
			s.Restart.MaxRetries = max
		}
	}
	if f.healthCmd != "" {
		s.Health = &runtime.HealthCheck{Cmd: []string{"/bin/sh", "-c", f.healthCmd}, Interval: f.healthInterval,
			Timeout: f.healthTimeout, Retries: f.healthRetries, StartPeriod: f.healthStart}
	}
	return s, nil
}

// parseVolume parses -v SOURCE:DESTINATION[:ro|rw] (runtime.ParseVolume);
// a relative source is made absolute.
func parseVolume(v string) (runtime.Mount, error) {
	m, err := runtime.ParseVolume(v)
	if err != nil {
		return runtime.Mount{}, usagef("-v %q: %v", v, err)
	}
	if m.Source, err = filepath.Abs(m.Source); err != nil {
		return runtime.Mount{}, usagef("-v %q: %v", v, err)
	}
	return m, nil
}

// parsePublish parses -p [IP:]HOSTPORT:CONTAINERPORT[/PROTO]
// (runtime.ParsePublish).
func parsePublish(p string) (runtime.Port, error) {
	port, err := runtime.ParsePublish(p)
	if err != nil {
		return runtime.Port{}, usagef("-p %q: %v", p, err)
	}
	return port, nil
}

func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create and start a container",
		Long: `Create and start a container from a local image. In the foreground
(without -d) berth prints the container's output and exits with its exit
code; a command missing from the image exits 127.`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
	}
	client := addHostFlag(cmd)
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVar(&f.name, "name", "", "container name")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (or KEY to copy it)")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "label KEY=VALUE")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user NAME|UID[:GROUP|GID]")
	fl.StringVar(&f.hostname, "hostname", "", "container hostname (default: the short id)")
	fl.StringVar(&f.network, "network", "bridge", "network: bridge, host or none")
	fl.StringVar(&f.restart, "restart", "no", "restart policy: no, on-failure[:N], always, unless-stopped")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 64m, 1g)")
	fl.Float64Var(&f.cpus, "cpus", 0, "CPU limit (e.g. 0.5)")
	fl.Int64Var(&f.pids, "pids-limit", 0, "process limit")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount HOST:CONTAINER[:ro]")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a port [IP:]HOSTPORT:CONTAINERPORT")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container id")
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits (foreground only)")
	fl.StringVar(&f.stopSignal, "stop-signal", "", "signal to stop the container (default SIGTERM)")
	fl.StringVar(&f.healthCmd, "health-cmd", "", "health check command, run with /bin/sh -c")
	fl.DurationVar(&f.healthInterval, "health-interval", 30*time.Second, "time between health checks")
	fl.DurationVar(&f.healthTimeout, "health-timeout", 30*time.Second, "health check timeout")
	fl.IntVar(&f.healthRetries, "health-retries", 3, "consecutive failures before unhealthy")
	fl.DurationVar(&f.healthStart, "health-start-period", 0, "failures in this period after start do not count")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		spec, err := f.spec(cmd, args)
		if err != nil {
			return err
		}
		c := client()
		ctx := cmd.Context()
		ctr, err := c.Run(ctx, spec)
		if err != nil {
			return daemonError(err)
		}
		if f.detach {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), ctr.ID)
			return err
		}
		if err := printLogs(ctx, c, ctr.ID, embedded.LogOptions{Follow: true}, false, cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil // interrupted: the container keeps running
		}
		got, err := waitExited(ctx, c, ctr.ID)
		if err != nil {
			return err
		}
		if f.rm {
			if err := c.Remove(context.WithoutCancel(ctx), ctr.ID, runtime.Force()); err != nil {
				return err
			}
		}
		if got.ExitCode != 0 {
			return exitCodeError{code: got.ExitCode}
		}
		return nil
	}
	return cmd
}

// waitExited polls until the container has exited (log streaming ends
// when the process does; the record follows a moment later).
func waitExited(ctx context.Context, c *api.Client, id string) (runtime.Container, error) {
	for {
		got, err := c.Inspect(ctx, id)
		if err != nil {
			return got, err
		}
		if got.State == runtime.StateExited || got.State == runtime.StateDead {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// printLogs writes a container's output to stdout/stderr by stream.
func printLogs(ctx context.Context, c *api.Client, id string, opts embedded.LogOptions, timestamps bool, stdout, stderr io.Writer) error {
	err := c.Logs(ctx, id, opts, func(l embedded.LogLine) error {
		w := stdout
		if l.Stream == "stderr" {
			w = stderr
		}
		if timestamps {
			if _, err := fmt.Fprint(w, l.Time.Format(time.RFC3339Nano), " "); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, l.Line)
		return err
	})
	if ctx.Err() != nil {
		return nil
	}
	return daemonError(err)
}

func newPsCommand() *cobra.Command {
	var all, quiet, noTrunc bool
	var filters []string
	var format string
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers",
		Args:  usageArgs(cobra.NoArgs),
	}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers, not only running ones")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print container ids")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate ids and commands")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter: id=, name=, label=KEY[=VALUE], status=, ancestor=IMAGE (repeatable)")
	cmd.Flags().StringVar(&format, "format", "", `output format: "json", a Go template ({{.ID}} {{.Names}} {{.Status}} {{.Label "k"}} ...), or "table TEMPLATE"`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		fl, err := parsePsFilters(filters)
		if err != nil {
			return err
		}
		fm, custom, err := newFormatter(format)
		if err != nil {
			return err
		}
		// A status filter other than running looks at stopped ones too, as docker.
		listAll := all || slices.ContainsFunc(fl["status"], func(s string) bool { return s != string(runtime.StateRunning) })
		cs, err := client().ListFiltered(cmd.Context(), api.ListOptions{All: listAll, Labels: fl.labels()})
		if err != nil {
			return daemonError(err)
		}
		cs = slices.DeleteFunc(cs, func(c runtime.Container) bool { return !fl.match(c) })
		out := cmd.OutOrStdout()
		rows := make([]any, 0, len(cs))
		for _, c := range cs {
			rows = append(rows, newPsRow(c, noTrunc))
		}
		switch {
		case quiet:
			for _, r := range rows {
				fmt.Fprintln(out, r.(psRow).ID)
			}
			return nil
		case custom:
			return fm.print(out, rows, func(f string) string { return cmp.Or(psHeaders[f], strings.ToUpper(f)) })
		}
		tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
		for _, r := range rows {
			r := r.(psRow)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names)
		}
		return tw.Flush()
	}
	return cmd
}

// status is docker's STATUS column.
func status(c runtime.Container) string {
	switch c.State {
	case runtime.StateRunning:
		s := "Up " + units.HumanDuration(time.Since(c.Started))
		if c.Health != runtime.HealthNone && c.Health != "" {
			s += " (" + string(c.Health) + ")"
		}
		return s
	case runtime.StateExited:
		return fmt.Sprintf("Exited (%d) %s ago", c.ExitCode, units.HumanDuration(time.Since(c.Finished)))
	case runtime.StateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", c.ExitCode, units.HumanDuration(time.Since(c.Finished)))
	case runtime.StateCreated:
		return "Created"
	}
	return string(c.State)
}

func ports(ps []runtime.Port) string {
	var out []string
	for _, p := range ps {
		if p.HostPort != 0 {
			ip := p.HostIP
			if ip == "" {
				ip = "0.0.0.0"
			}
			out = append(out, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.Port, p.Proto))
		} else {
			out = append(out, fmt.Sprintf("%d/%s", p.Port, p.Proto))
		}
	}
	return strings.Join(out, ", ")
}

// eachContainer runs fn for every argument, printing each name on success
// like docker does, and returns the first failure.
func eachContainer(cmd *cobra.Command, args []string, fn func(ctx context.Context, id string) error) error {
	var first error
	for _, id := range args {
		if err := fn(cmd.Context(), id); err != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "berth:", err)
			if first == nil {
				first = exitCodeError{code: exitFailure}
				if de := daemonError(err); errors.As(de, new(usageError)) {
					first = exitCodeError{code: exitUsage}
				}
			}
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), id)
	}
	return first
}

func newStartCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "start CONTAINER...", Short: "Start stopped containers", Args: usageArgs(cobra.MinimumNArgs(1))}
	client := addHostFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := client()
		return eachContainer(cmd, args, c.Start)
	}
	return cmd
}

func newStopCommand() *cobra.Command {
	var secs int
	cmd := &cobra.Command{Use: "stop CONTAINER...", Short: "Stop containers: the stop signal, a grace period, then SIGKILL", Args: usageArgs(cobra.MinimumNArgs(1))}
	client := addHostFlag(cmd)
	cmd.Flags().IntVarP(&secs, "time", "t", 10, "seconds to wait before killing")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := client()
		return eachContainer(cmd, args, func(ctx context.Context, id string) error {
			return c.Stop(ctx, id, time.Duration(secs)*time.Second)
		})
	}
	return cmd
}

func newRestartCommand() *cobra.Command {
	var secs int
	cmd := &cobra.Command{Use: "restart CONTAINER...", Short: "Restart containers", Args: usageArgs(cobra.MinimumNArgs(1))}
	client := addHostFlag(cmd)
	cmd.Flags().IntVarP(&secs, "time", "t", 10, "seconds to wait before killing")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := client()
		return eachContainer(cmd, args, func(ctx context.Context, id string) error {
			return c.Restart(ctx, id, time.Duration(secs)*time.Second)
		})
	}
	return cmd
}

func newKillCommand() *cobra.Command {
	var signal string
	cmd := &cobra.Command{Use: "kill CONTAINER...", Short: "Send a signal to containers (default SIGKILL)", Args: usageArgs(cobra.MinimumNArgs(1))}
	client := addHostFlag(cmd)
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal to send")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := client()
		return eachContainer(cmd, args, func(ctx context.Context, id string) error { return c.Kill(ctx, id, signal) })
	}
	return cmd
}

func newRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{Use: "rm CONTAINER...", Short: "Remove containers", Args: usageArgs(cobra.MinimumNArgs(1))}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill and remove running containers")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := client()
		return eachContainer(cmd, args, func(ctx context.Context, id string) error {
			if force {
				return c.Remove(ctx, id, runtime.Force())
			}
			return c.Remove(ctx, id)
		})
	}
	return cmd
}

func newLogsCommand() *cobra.Command {
	var follow, timestamps bool
	var tail int
	cmd := &cobra.Command{Use: "logs CONTAINER", Short: "Print a container's output", Args: usageArgs(cobra.ExactArgs(1))}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with its time")
	cmd.Flags().IntVarP(&tail, "tail", "n", 0, "only the last N lines (0: all)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return printLogs(cmd.Context(), client(), args[0], embedded.LogOptions{Follow: follow, Tail: tail}, timestamps, cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	return cmd
}

func newInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{Use: "inspect CONTAINER...", Short: "Print containers as JSON", Args: usageArgs(cobra.MinimumNArgs(1))}
	client := addHostFlag(cmd)
	cmd.Flags().StringVarP(&format, "format", "f", "", `a Go template per container ({{.IP}}, {{json .Labels}} ...), or "json"`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		fm, custom, err := newFormatter(format)
		if err != nil {
			return err
		}
		c := client()
		out := []runtime.Container{}
		var first error
		for _, id := range args {
			ctr, err := c.Inspect(cmd.Context(), id)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "berth:", err)
				first = exitCodeError{code: exitFailure}
				continue
			}
			out = append(out, ctr)
		}
		if custom && !fm.json {
			items := make([]any, len(out))
			for i, c := range out {
				items[i] = c
			}
			if err := fm.print(cmd.OutOrStdout(), items, strings.ToUpper); err != nil {
				return err
			}
			return first
		}
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "    ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return first
	}
	return cmd
}

func newExecCommand() *cobra.Command {
	var (
		env             []string
		interactive, tt bool
	)
	cmd := &cobra.Command{
		Use:   "exec [flags] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Long: `Run a command in a running container and exit with its exit code (127 when
it does not exist). -i passes this command's stdin to it (else its stdin
is empty); -t gives it a terminal, sized as this one and resized with it,
and puts this terminal into raw mode while it runs (with -it, keys such
as Ctrl-C go to the command).`,
		Args: usageArgs(cobra.MinimumNArgs(2)),
	}
	client := addHostFlag(cmd)
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "pass stdin to the command")
	cmd.Flags().BoolVarP(&tt, "tty", "t", false, "give the command a terminal")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx, cancel := context.WithCancel(cmd.Context())
		defer cancel()
		req := api.ExecRequest{Cmd: args[1:], Env: env, Stdin: interactive, TTY: tt}
		eio := api.ExecIO{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
		if interactive {
			eio.Stdin = cmd.InOrStdin()
		}
		if tt {
			term := terminalFd(cmd.InOrStdin())
			if term < 0 {
				term = terminalFd(cmd.OutOrStdout())
			}
			if term >= 0 {
				if ws, err := unix.IoctlGetWinsize(term, unix.TIOCGWINSZ); err == nil {
					req.Size = embedded.TermSize{Rows: ws.Row, Cols: ws.Col}
				}
				eio.Resize = followResizes(ctx, term)
			}
			if in := terminalFd(cmd.InOrStdin()); interactive && in >= 0 {
				restore, err := rawTerminal(in)
				if err != nil {
					return fmt.Errorf("terminal: %w", err)
				}
				defer restore()
			}
		}
		code, err := client().Exec(ctx, args[0], req, eio)
		if err != nil {
			return daemonError(err)
		}
		if code != 0 {
			return exitCodeError{code: code}
		}
		return nil
	}
	return cmd
}

// terminalFd is the descriptor of v when it is a terminal, else -1.
func terminalFd(v any) int {
	f, ok := v.(*os.File)
	if !ok {
		return -1
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return -1
	}
	return int(f.Fd())
}

// followResizes reports the terminal's new size after each SIGWINCH
// until ctx ends.
func followResizes(ctx context.Context, fd int) <-chan embedded.TermSize {
	out := make(chan embedded.TermSize, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGWINCH)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
			}
			ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
			if err != nil {
				continue
			}
			select {
			case <-out: // replace a size not sent yet
			default:
			}
			out <- embedded.TermSize{Rows: ws.Row, Cols: ws.Col}
		}
	}()
	return out
}

// rawTerminal puts the terminal on fd into raw mode (cfmakeraw) and
// returns what restores it.
func rawTerminal(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

func newEventsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "events", Short: "Stream container lifecycle events", Args: usageArgs(cobra.NoArgs)}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as JSON with the full container")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		events, errc := client().Events(ctx)
		out := cmd.OutOrStdout()
		enc := json.NewEncoder(out)
		for ev := range events {
			if asJSON {
				if err := enc.Encode(ev); err != nil {
					return err
				}
				continue
			}
			extra := ""
			if ev.Type == runtime.EventDie {
				extra = fmt.Sprintf(", exitCode=%d", ev.Container.ExitCode)
			}
			if ev.Type == runtime.EventHealthStatus {
				extra = ", health=" + string(ev.Container.Health)
			}
			fmt.Fprintf(out, "%s container %s %s (image=%s, name=%s%s)\n", ev.Time.Format(time.RFC3339Nano), ev.Type,
				ev.Container.ID, ev.Container.Image, ev.Container.Name, extra)
		}
		if err := <-errc; err != nil {
			return daemonError(err)
		}
		return nil
	}
	return cmd
}
