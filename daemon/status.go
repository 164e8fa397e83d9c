package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/berthd/berth/cluster"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/status"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/watcher"
)

// Bounds of the status page's gathering: it must not stall behind a long
// render cycle or a slow store.
const (
	statusRunnerWait = 300 * time.Millisecond // the runner's answer; else its last one
	statusHealthWait = 500 * time.Millisecond
	statusMembersTTL = 5 * time.Second // cluster members are listed at most this often
)

// statusPage is the daemon's side of the status page (package status):
// what it keeps between views and gathers for each.
type statusPage struct {
	renders *status.Renders

	mu        sync.Mutex
	mirror    *watcher.Mirror // of every record; nil until a listener serves the page
	server    *status.Server
	storeURL  string
	version   string
	templates []runner.TemplateStatus // the runner's last answer
	members   []cluster.MemberInfo
	membersAt time.Time
	membersE  error
}

func newStatusPage() *statusPage { return &statusPage{renders: status.NewRenders()} }

// startStatus runs, when a listener serves the page, its record mirror,
// the render tracker and the event streams until ctx ends. It reads the
// templates' destinations first, for the first diff.
func (d *Daemon) startStatus(ctx context.Context, wg *sync.WaitGroup, templates []config.Template) {
	p := d.status
	p.renders.Track(templates)
	p.mu.Lock()
	m, srv := p.mirror, p.server
	p.mu.Unlock()
	if m == nil {
		return
	}
	wg.Go(func() { p.renders.Run(ctx) })
	wg.Go(func() { m.Run(ctx) })
	wg.Go(func() { srv.Run(ctx) })
}

// isLoopback reports whether a listen address only accepts connections
// from this host: 127.0.0.0/8, ::1 or localhost (not "" or 0.0.0.0).
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// listenHandler is what the [daemon] listen address serves: /metrics and
// /healthz (Handler), and the status page with its API at / and
// /api/v1/. On an address that is not loopback the page needs
// credentials ([daemon.status]); without them it answers 403 and says so.
func (d *Daemon) listenHandler(s Settings) (http.Handler, error) {
	creds, err := s.Status.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	auth := status.Auth{User: creds.User, Password: creds.Password, Token: creds.Token}
	mux := http.NewServeMux()
	base := d.Handler()
	mux.Handle("/metrics", base)
	mux.Handle("/healthz", base)
	if !auth.Enabled() && !isLoopback(s.Listen) {
		d.log.Warn("status page off: the listen address is not loopback and [daemon.status] sets no credentials", "listen", s.Listen)
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "berth: the status page is off: listen "+s.Listen+" is not a loopback address, and [daemon.status] sets no token_file or user and password_file", http.StatusForbidden)
		})
		return mux, nil
	}
	p := d.status
	m := watcher.NewMirror(d.st, records.Root(d.prefix()), watcher.WithLogger(d.log))
	p.mu.Lock()
	p.mirror, p.storeURL, p.version = m, redactURL(s.storeURL()), s.Version
	notify, _ := m.Subscribe() // for the daemon's life
	p.server = status.NewServer(d.gatherStatus, status.WithAuth(auth), status.WithLogger(d.log),
		status.WithTriggers(notify, p.renders.Changed()))
	mux.Handle("/", p.server.Handler())
	p.mu.Unlock()
	return mux, nil
}

// redactURL drops a URL's password.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// gatherStatus is the status page's Input now.
func (d *Daemon) gatherStatus(ctx context.Context) status.Input {
	p := d.status
	p.mu.Lock()
	m, storeURL, version := p.mirror, p.storeURL, p.version
	p.mu.Unlock()
	in := status.Input{Now: time.Now(), Host: d.cfg.Registrar.Host, Version: version, Prefix: d.prefix(), Renders: p.renders.Snapshot()}
	if d.reg != nil {
		in.Host, _ = d.cfg.Registrar.HostName()
	}
	var own watcher.Health
	if m != nil {
		snap := m.Snapshot()
		in.Records, in.Revision = snap.KVs, snap.Revision
		own = m.Health()
		in.Synced = own.Synced
	}

	hctx, cancel := context.WithTimeout(ctx, statusHealthWait)
	rep := d.Health(hctx)
	cancel()
	in.Health = status.Health{Status: rep.Status}
	for _, c := range rep.Checks {
		in.Health.Checks = append(in.Health.Checks, status.Check{Name: c.Name, OK: c.OK, Degraded: c.Degraded, Detail: c.Detail})
	}

	rctx, cancel := context.WithTimeout(ctx, statusRunnerWait)
	sts, err := d.runner.Status(rctx)
	cancel()
	p.mu.Lock()
	if err == nil {
		p.templates = sts
	}
	in.Templates = p.templates
	p.mu.Unlock()

	if a, ok := d.ACME(); ok {
		in.ACME = &a
	}
	in.Store = status.Store{Backend: backendOf(storeURL), Endpoint: storeURL, Healthy: true}
	for _, c := range rep.Checks {
		if c.Name == "store" {
			in.Store.Healthy, in.Store.Detail = c.OK, c.Detail
		}
	}
	in.Store.WatchLag, in.Store.WatchLagSamples = d.m.meanWatchLag()
	in.Store.Catalog = d.catalogStatus(ctx)
	seen := map[string]bool{}
	watches := []watcher.Health{own}
	for _, t := range in.Templates {
		watches = append(watches, t.Mirrors...)
	}
	for _, h := range watches {
		if h.Prefix == "" || seen[h.Prefix] {
			continue
		}
		seen[h.Prefix] = true
		w := status.Watch{Prefix: h.Prefix, Synced: h.Synced, Revision: h.Revision, LastEvent: h.LastEvent}
		if h.LastError != nil {
			w.Error = h.LastError.Error()
		}
		in.Store.Watches = append(in.Store.Watches, w)
	}

	in.Members, in.MembersErr = d.clusterMembers(ctx)
	in.Deploys = d.deployHistory(ctx, in.Records)
	return in
}

// backendOf names a store URL's backend.
func backendOf(u string) string {
	scheme, _, ok := strings.Cut(u, "://")
	if !ok {
		return "unknown"
	}
	return scheme
}

// meanWatchLag is the mean of the watch-lag histogram, and its samples.
func (m *metrics) meanWatchLag() (time.Duration, uint64) {
	var pb dto.Metric
	if m.watchLag.Write(&pb) != nil || pb.Histogram == nil || pb.Histogram.GetSampleCount() == 0 {
		return 0, 0
	}
	h := pb.Histogram
	return time.Duration(h.GetSampleSum() / float64(h.GetSampleCount()) * float64(time.Second)), h.GetSampleCount()
}

// clusterMembers lists the members of an etcd store (nil, nil for another
// backend), at most every statusMembersTTL.
func (d *Daemon) clusterMembers(ctx context.Context) ([]cluster.MemberInfo, error) {
	es, ok := d.st.Store.(*etcd.Store)
	if !ok {
		return nil, nil
	}
	p := d.status
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.membersAt) < statusMembersTTL {
		return p.members, p.membersE
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	p.members, p.membersE = cluster.List(cctx, es.Client())
	p.membersAt = time.Now()
	return p.members, p.membersE
}

// deployHistory reads the history of every service with deployment
// records among kvs (nil without deploys).
func (d *Daemon) deployHistory(ctx context.Context, kvs []store.KV) map[string][]deploy.Revision {
	if d.deploys == nil {
		return nil
	}
	dir := records.Root(d.prefix()) + "deployments/"
	out := map[string][]deploy.Revision{}
	for _, kv := range kvs {
		rest, ok := strings.CutPrefix(kv.Key, dir)
		if !ok {
			continue
		}
		svc, _, _ := strings.Cut(rest, "/")
		if _, done := out[svc]; done || records.CheckService(svc) != nil {
			continue
		}
		hist, err := d.deploys.History(ctx, svc)
		if err != nil {
			d.log.Debug("status page: deploy history", "service", svc, "err", err)
			continue
		}
		if len(hist) > 0 {
			out[svc] = hist
		}
	}
	return out
}
