package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
)

// Proxies are the values of E2EProxyOptions.Proxy.
func Proxies() []string { return []string{"nginx", "nginx-lua", "haproxy"} }

// E2EProxyOptions configure E2EProxy.
type E2EProxyOptions struct {
	Proxy  string // "nginx" (membership rendered, check + reload), "nginx-lua" or "haproxy" (live endpoints)
	VHosts int    // virtual hosts in the configuration besides the measured one
	Runs   int    // containers started and stopped, one after another
	Rate   int    // requests per second of the continuous load (default 200)
	Drain  time.Duration
}

// E2EProxyResult is the JSON of berth bench e2e --proxy; its fields are
// part of berth's interface (issue #15).
type E2EProxyResult struct {
	Proxy          string  `json:"proxy"`
	VHosts         int     `json:"vhosts"`
	Runs           int     `json:"runs"`
	UpP50Ms        float64 `json:"up_p50_ms"`
	UpP99Ms        float64 `json:"up_p99_ms"`
	DownP50Ms      float64 `json:"down_p50_ms"`
	DownP99Ms      float64 `json:"down_p99_ms"`
	Reloads        int     `json:"reloads"`
	MaxGenerations int     `json:"max_generations"`
	Requests       int     `json:"requests"`
	FailedRequests int     `json:"failed_requests"`
}

// E2EProxy runs berth up's pipeline in one process (embedded store and
// runtime, registrar, runner, a shipped template: nginx.tmpl, nginx-lua.tmpl
// with live = "nginx-lua", or haproxy.cfg.tmpl with live = "haproxy") in
// front of a real nginx (HAProxy for haproxy) whose configuration holds
// VHosts virtual hosts, and, under a continuous load
// on one more host, starts Runs busybox httpd containers for that host
// one after another, each stopped before the next starts. It measures,
// through real HTTP:
//
//	up:   from the API's run call returning to nginx answering from the
//	      container;
//	down: from the API's stop call to the last request nginx sent it
//	      (the stop drains first: Drain, default berth up's);
//
// and the reloads berth made, the most worker generations alive at once,
// and the load's requests and failures. Needs root, nginx (with Debian's
// Lua module for nginx-lua; haproxy for haproxy) and busybox-static.
func E2EProxy(ctx context.Context, o E2EProxyOptions, log *slog.Logger) (E2EProxyResult, error) {
	return offMain(func() (E2EProxyResult, error) { return benchE2EProxy(ctx, o, log) })
}

// The measured host, and the body the load's backend and the containers
// answer with.
const (
	proxyHost = "bench.localhost"
	baseBody  = "base"
	ctrBody   = "container"
)

func benchE2EProxy(ctx context.Context, o E2EProxyOptions, log *slog.Logger) (res E2EProxyResult, err error) {
	res.Proxy, res.VHosts, res.Runs = o.Proxy, o.VHosts, o.Runs
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Drain <= 0 {
		o.Drain = daemon.DefaultDrain
	}
	var live bool
	switch o.Proxy {
	case "nginx":
	case "nginx-lua", "haproxy":
		live = true
	default:
		return res, fmt.Errorf("proxy %q: want one of %q", o.Proxy, Proxies())
	}

	// The runtime: a stop drains first (berth up does so with live
	// endpoints; here with both proxies, so that down is how long each
	// takes to stop routing to a container that still serves).
	fragment := map[bool]string{false: "nginx.tmpl", true: "nginx-lua.tmpl"}[live]
	rig, err := newE2ERig(ctx, "bpx", 252, fragment, embedded.WithStopDelay(o.Drain))
	if err != nil {
		return res, err
	}
	defer rig.Close()
	if err := rig.Image(ctx, "bench:httpd", ctrBody+"\n"); err != nil {
		return res, err
	}
	st, suffix, reloads := rig.St, rig.Suffix, rig.Reloads

	// The backend of every other virtual host and of the measured one.
	baseLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	base := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, baseBody+"\n") })}
	go base.Serve(baseLn)
	defer base.Close()
	baseAddr := baseLn.Addr().(*net.TCPAddr)
	for i := -1; i < o.VHosts; i++ {
		host, id := proxyHost, "static-base"
		if i >= 0 {
			host, id = fmt.Sprintf("v%d.bench.localhost", i), fmt.Sprintf("static-%d", i)
		}
		in := records.Instance{ID: id, Name: id, Service: "static", Host: "static", IP: baseAddr.IP.String(), Port: baseAddr.Port,
			Env: map[string]string{"VIRTUAL_HOST": host}, State: records.StateRunning, Weight: 1}
		b, _ := json.Marshal(in)
		if _, err := st.Put(ctx, records.ServiceKey(records.DefaultPrefix, "static", "static", id), b); err != nil {
			return res, err
		}
	}

	switch {
	case o.Proxy == "haproxy":
		if rig.Proxy, rig.Tmpl, rig.Env, err = haproxyBench(rig.Dir, reloads); err != nil {
			return res, err
		}
	case live:
		rig.Tmpl.Live, rig.Tmpl.LiveDir = "nginx-lua", filepath.Join(rig.Dir, "live")
	}
	if err := rig.Start(ctx, daemon.Config{Registrar: registrar.Config{Host: "bench", Drain: o.Drain}}); err != nil {
		return res, err
	}
	client := rig.Client
	// A new connection per probe: an idle keep-alive connection stays with
	// an old worker, which serves the old configuration until it closes.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	px := rig.Proxy
	get := func() string { return getBody(ctx, hc, px.addr()) }
	if err := waitFor(ctx, 60*time.Second, func() bool { return get() == baseBody }); err != nil {
		return res, fmt.Errorf("%s never served %s on %s: %w", o.Proxy, proxyHost, px.addr(), err)
	}

	gens := startGenerations(px.workers)
	load := realparts.StartLoad(px.addr(), proxyHost, o.Rate, 4)
	var ups, downs []time.Duration
	reloadsBefore := -1
	for i := 0; i <= o.Runs; i++ { // 0 warms up
		if i == 1 {
			reloadsBefore = countLines(reloads)
			gens.reset()
		}
		c, err := client.Run(ctx, runtime.Spec{
			Name: fmt.Sprintf("bench-%s-%d", suffix, i), Image: "bench:httpd",
			Cmd: []string{"httpd", "-f", "-p", "80", "-h", "/www"},
			Env: []string{"VIRTUAL_HOST=" + proxyHost},
		})
		if err != nil {
			load.Stop()
			return res, fmt.Errorf("run %d: %w", i, err)
		}
		t0 := time.Now()
		if err := waitFor(ctx, 60*time.Second, func() bool { return get() == ctrBody }); err != nil {
			load.Stop()
			return res, fmt.Errorf("container %d (%s) never served through %s: %w", i, c.IP, o.Proxy, err)
		}
		up := time.Since(t0)
		t0 = time.Now()
		probed := probeDuring(ctx, px.addr(), func() error { return client.Stop(ctx, c.ID, 0) })
		if probed.err != nil {
			load.Stop()
			return res, fmt.Errorf("stop %d: %w", i, probed.err)
		}
		// Down: the last request sent to it, once its records are gone
		// and nothing has reached it for a while.
		if err := waitFor(ctx, 60*time.Second, func() bool {
			return time.Since(load.LastStart(ctrBody)) > 300*time.Millisecond && get() == baseBody
		}); err != nil {
			load.Stop()
			return res, fmt.Errorf("container %d still served after its stop: %w", i, err)
		}
		if err := client.Remove(ctx, c.ID, runtime.Force()); err != nil {
			log.Warn("cannot remove a bench container", "err", err)
		}
		if i > 0 {
			last := load.LastStart(ctrBody)
			if probed.last.After(last) {
				last = probed.last
			}
			ups, downs = append(ups, up), append(downs, max(last.Sub(t0), 0))
		}
	}
	lr := load.Stop()
	res.MaxGenerations = gens.stop()
	res.Reloads = countLines(reloads) - reloadsBefore
	res.Requests, res.FailedRequests = lr.Requests, lr.Failed
	if lr.Failed > 0 {
		log.Warn("requests failed under load", "failed", lr.Failed, "of", lr.Requests, "first", lr.Failures[0], "proxy_log", px.log())
	}
	res.UpP50Ms, res.UpP99Ms = ms(percentile(ups, 50)), ms(percentile(ups, 99))
	res.DownP50Ms, res.DownP99Ms = ms(percentile(downs, 50)), ms(percentile(downs, 99))
	log.Info("end-to-end latency under load measured", "proxy", o.Proxy, "vhosts", o.VHosts, "runs", o.Runs)
	return res, nil
}

// getBody is one GET of proxyHost through addr: the answer's body, "" on
// an error or a status other than 200.
func getBody(ctx context.Context, hc *http.Client, addr string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	req.Host = proxyHost
	resp, err := hc.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return strings.TrimSpace(string(b))
}

type probed struct {
	last time.Time // start of the last probe the container answered
	err  error     // fn's
}

// probeDuring runs fn (a stop) while probing proxyHost through addr every
// millisecond from a keep-alive client, as the load's clients are.
func probeDuring(ctx context.Context, addr string, fn func() error) probed {
	var p probed
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		hc := &http.Client{Timeout: 2 * time.Second}
		defer hc.CloseIdleConnections()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			start := time.Now()
			if getBody(ctx, hc, addr) == ctrBody {
				p.last = start
			}
		}
	}()
	p.err = fn()
	close(done)
	<-finished
	return p
}

func countLines(p string) int {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// generations samples the proxy's worker processes: the most alive at
// once.
type generations struct {
	sample func() int
	stopc  chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	max    int
}

func startGenerations(sample func() int) *generations {
	g := &generations{sample: sample, stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for {
			n := g.sample()
			g.mu.Lock()
			g.max = max(g.max, n)
			g.mu.Unlock()
			select {
			case <-g.stopc:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return g
}

func (g *generations) reset() {
	g.mu.Lock()
	g.max = 0
	g.mu.Unlock()
}

func (g *generations) stop() int {
	close(g.stopc)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max
}

// proxyProcess is the proxy a bench runs: its address and rendered
// configuration, start and stop, the tail of its log, and how many worker
// generations are alive.
type proxyProcess interface {
	addr() string
	conf() string
	start() error
	stop()
	log() string
	workers() int
}

type nginxProcess struct{ *realparts.Nginx }

func (n nginxProcess) addr() string { return n.Addr }
func (n nginxProcess) conf() string { return n.Conf }
func (n nginxProcess) start() error { return n.Start() }
func (n nginxProcess) stop()        { n.Stop() }
func (n nginxProcess) log() string  { return n.ErrorLog() }

// workers counts nginx's worker processes (worker_processes is 1: each
// worker alive is one generation, old ones shutting down included).
func (n nginxProcess) workers() int {
	b, err := os.ReadFile(filepath.Join(n.Dir, "nginx.pid"))
	if err != nil {
		return 0
	}
	pid := strings.TrimSpace(string(b))
	kids, err := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
	if err != nil {
		return 0
	}
	c := 0
	for _, k := range strings.Fields(string(kids)) {
		cmd, err := os.ReadFile("/proc/" + k + "/cmdline")
		if err == nil && strings.HasPrefix(string(cmd), "nginx: worker process") {
			c++
		}
	}
	return c
}

// E2EProxies runs E2EProxy for every proxy at every count of virtual
// hosts, one after another (proxy by proxy, in the order given, each at
// every count), with o's other options, and hands each result to each as
// soon as it is measured: the matrix of issue #15's closing note from one
// run. It stops at the first error, each's or a run's.
func E2EProxies(ctx context.Context, proxies []string, vhosts []int, o E2EProxyOptions, log *slog.Logger, each func(E2EProxyResult) error) error {
	for _, p := range proxies {
		for _, n := range vhosts {
			o.Proxy, o.VHosts = p, n
			res, err := E2EProxy(ctx, o, log)
			if err != nil {
				return fmt.Errorf("%s at %d vhosts: %w", p, n, err)
			}
			if err := each(res); err != nil {
				return err
			}
		}
	}
	return nil
}
