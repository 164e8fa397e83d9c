package dockergen

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runtime"
)

// restartSignal is docker-gen's signal value meaning "restart the
// container" (docker restart -t 10) instead of signalling it.
const restartSignal = -1

// restartGrace is how long a restarted container gets to stop, as in
// docker-gen.
const restartGrace = 10 * time.Second

// notify is whom a configuration signals after its destination changed:
// docker-gen's NotifyContainers (name or ID → signal) and
// NotifyContainersFilter with NotifyContainersSignal.
type notify struct {
	containers   map[string]int
	filter       *Filter
	filterSignal int
}

func newNotify(x *config.DockerGenExtras) (notify, error) {
	if x == nil {
		return notify{}, nil
	}
	n := notify{containers: x.NotifyContainers, filterSignal: x.NotifyContainersSignal}
	if len(x.NotifyContainersFilter) > 0 {
		// Docker's list without all=1, as docker-gen asks for: running
		// containers unless the filter names a status.
		f, err := ParseFilter(x.NotifyContainersFilter, Filters{})
		if err != nil {
			return notify{}, err
		}
		n.filter = &f
	}
	return n, nil
}

// signal sends each container the configuration names its signal, then
// each running container its notify filter selects (from the containers
// followed: no listing call). Failures are logged; they do not undo the
// render.
func (g *Generator) signal(ctx context.Context, j *job, containers []runtime.Container) {
	n := j.notify
	for _, name := range slices.Sorted(maps.Keys(n.containers)) {
		g.signalOne(ctx, j, name, n.containers[name])
	}
	if n.filter == nil {
		return
	}
	for _, c := range containers {
		if n.filter.Match(c) {
			g.signalOne(ctx, j, c.ID, n.filterSignal)
		}
	}
}

func (g *Generator) signalOne(ctx context.Context, j *job, container string, sig int) {
	if sig == restartSignal {
		g.log.Info("restarting container", "config", j.conf.Origin, "container", container)
		if err := g.rt.Restart(ctx, container, restartGrace); err != nil {
			g.log.Error("restarting container failed", "config", j.conf.Origin, "container", container, "err", err)
		}
		return
	}
	if sig == 0 {
		// Unset. docker-gen sends no signal parameter then, and Docker
		// kills the container (SIGKILL); berth sends SIGHUP, docker-gen's
		// command-line default.
		sig = int(syscall.SIGHUP)
	}
	g.log.Info("signalling container", "config", j.conf.Origin, "container", container, "signal", sig)
	if err := g.rt.Signal(ctx, container, strconv.Itoa(sig)); err != nil {
		g.log.Error("signalling container failed", "config", j.conf.Origin, "container", container, "signal", sig, "err", err)
	}
}

// NotifyOutput wraps the Commander a Renderer runs commands with so that
// the output of the notify commands of the configurations that ask for it
// (docker-gen's -notify-output, notifyoutput = true) is logged, one entry
// per line, as docker-gen does. Without such a configuration it returns
// inner.
func NotifyOutput(inner render.Commander, log *slog.Logger, confs []config.Template) render.Commander {
	cmds := map[string]bool{}
	for _, c := range confs {
		if c.DockerGen != nil && c.DockerGen.NotifyOutput && c.Spec.Reload != "" {
			cmds[c.Spec.Reload] = true
		}
	}
	if len(cmds) == 0 {
		return inner
	}
	return outputLogger{inner: inner, log: log, cmds: cmds}
}

type outputLogger struct {
	inner render.Commander
	log   *slog.Logger
	cmds  map[string]bool // the notify commands whose output is logged
}

func (o outputLogger) Run(ctx context.Context, argv []string) ([]byte, error) {
	out, err := o.inner.Run(ctx, argv)
	if len(argv) == 3 && o.cmds[argv[2]] {
		logOutput(o.log, argv[2], out)
	}
	return out, err
}

func logOutput(log *slog.Logger, cmd string, out []byte) {
	for line := range strings.Lines(string(out)) {
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			log.Info("notify output", "command", cmd, "line", line)
		}
	}
}
