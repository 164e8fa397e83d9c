package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
)

// withDeploys makes the daemon's deploy service over rt and returns the
// runtime the registrar is to follow: registered, the registrar's view
// of rt, through which the deploy service drains containers.
func (d *Daemon) withDeploys(rt, registered runtime.Runtime) runtime.Runtime {
	dv := &drainView{Runtime: registered, subs: map[chan runtime.Event]struct{}{}}
	opts := []deploy.Option{
		deploy.WithTemplates(daemonTemplates{d}), deploy.WithDrainer(dv), deploy.WithLogger(d.log),
		deploy.WithPrefix(d.prefix()), deploy.WithHost(d.cfg.Registrar.Host), deploy.WithDrain(d.cfg.Registrar.Drain),
	}
	if emb, ok := rt.(*embedded.Runtime); ok {
		opts = append(opts, deploy.WithImageResolver(embeddedImages{emb}), deploy.WithAddresses(embeddedImages{emb}))
	}
	d.deploys = deploy.New(d.st, rt, opts...)
	return dv
}

// keepDeploys runs the deploy service's upkeep (interrupted rollouts
// settled, replicas kept) until ctx ends; wg waits for it.
func (d *Daemon) keepDeploys(ctx context.Context, wg *sync.WaitGroup) {
	if d.deploys == nil {
		return
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.mu.Lock()
	d.stopKeeping = func() { cancel(); <-done }
	d.mu.Unlock()
	wg.Go(func() { defer close(done); _ = d.deploys.Run(kctx) })
}

// stopDeploys ends the deploy service's upkeep and waits for it: before a
// shutdown stops the containers, or the keeper would start them again
// (they are its replicas) behind the shutdown's back.
func (d *Daemon) stopDeploys() {
	d.mu.Lock()
	stop := d.stopKeeping
	d.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Deploys is the daemon's deploy service (nil without a runtime).
func (d *Daemon) Deploys() *deploy.Service { return d.deploys }

// DeployAPI serves the deploy service on the berth API (none without a
// runtime).
func (d *Daemon) DeployAPI() api.ServerOption {
	if d.deploys == nil {
		return func(*api.Server) {}
	}
	return api.WithDeploys(d.deploys)
}

// daemonTemplates is the runner's status, for the deploy service.
type daemonTemplates struct{ d *Daemon }

func (t daemonTemplates) Status(ctx context.Context) ([]runner.TemplateStatus, error) {
	return t.d.runner.Status(ctx)
}

// embeddedImages finds images in the embedded runtime's store, and counts
// its bridge's free addresses.
type embeddedImages struct{ rt *embedded.Runtime }

func (e embeddedImages) ResolveImage(_ context.Context, ref string) (string, error) {
	img, err := e.rt.Images().Get(ref)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// FreeAddresses counts the bridge's free addresses.
func (e embeddedImages) FreeAddresses(context.Context) (int, error) {
	if e.rt.Network() == nil {
		return 1 << 20, nil // no bridge: nothing to run out of here
	}
	return e.rt.Network().Free()
}

// drainView is the registrar's view of the runtime, with the deploy
// service's drains in it: Drain announces a container's coming stop the
// way a stop's kill event does (the registrar marks its records draining
// while it still serves, and keeps it out until it exits), Undrain a
// container that serves again (the registrar writes its records running).
// The container itself is not signalled: the deploy service stops it
// after the drain period.
type drainView struct {
	runtime.Runtime
	mu   sync.Mutex
	subs map[chan runtime.Event]struct{}
}

// Events merges the runtime's events with the drains; it closes its
// channels as the runtime closes its own.
func (v *drainView) Events(ctx context.Context) (<-chan runtime.Event, <-chan error) {
	in, errc := v.Runtime.Events(ctx)
	out := make(chan runtime.Event)
	syn := make(chan runtime.Event, 64)
	v.mu.Lock()
	v.subs[syn] = struct{}{}
	v.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			v.mu.Lock()
			delete(v.subs, syn)
			v.mu.Unlock()
		}()
		for {
			var ev runtime.Event
			var ok bool
			select {
			case ev, ok = <-in:
				if !ok {
					return
				}
			case ev = <-syn:
			case <-ctx.Done():
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}

func (v *drainView) Drain(ctx context.Context, ids ...string) error {
	return v.announce(ctx, runtime.EventKill, ids)
}

func (v *drainView) Undrain(ctx context.Context, ids ...string) error {
	return v.announce(ctx, runtime.EventStart, ids)
}

func (v *drainView) announce(ctx context.Context, typ runtime.EventType, ids []string) error {
	for _, id := range ids {
		c, err := v.Runtime.Inspect(ctx, id)
		if err != nil {
			return err
		}
		if !c.Running() {
			continue
		}
		ev := runtime.Event{Type: typ, Time: time.Now(), Container: c}
		if typ == runtime.EventKill {
			ev.Signal = "SIGTERM"
		}
		v.mu.Lock()
		subs := make([]chan runtime.Event, 0, len(v.subs))
		for ch := range v.subs {
			subs = append(subs, ch)
		}
		v.mu.Unlock()
		if len(subs) == 0 {
			return fmt.Errorf("drain %s: the registrar does not follow the runtime", c.Name)
		}
		for _, ch := range subs {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}
