package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/tick"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
)

// DeployResult is the JSON of berth bench deploy; its first fields are
// part of berth's interface (compared across runs).
type DeployResult struct {
	Replicas int `json:"replicas"`
	// Of the blue-green deploy v1 → v2: from the deploy call to every new
	// container in nginx (deploy_s), and to the old ones gone (switch_s).
	DeploySec      float64 `json:"deploy_s"`
	SwitchSec      float64 `json:"switch_s"`
	Requests       int64   `json:"requests"`        // served through nginx during the steps
	FailedRequests int64   `json:"failed_requests"` // connection errors and 5xx among them
	// Steps are deploy v2, rollback (to v1) and deploy v3 (its health
	// check fails), in order.
	Steps []DeployStep `json:"steps"`
	// Versions counts the responses of each version over the whole load.
	Versions map[string]int64 `json:"versions"`
	// Failures are the first failed requests (at most 10), and then
	// nginx's last error log lines about upstreams, for the record.
	Failures []string `json:"failures,omitempty"`
}

// DeployStep is one step of berth bench deploy.
type DeployStep struct {
	Name     string  `json:"name"`
	Revision int     `json:"revision"`
	Outcome  string  `json:"outcome"`
	Reason   string  `json:"reason,omitempty"`
	Seconds  float64 `json:"seconds"`
	// After counts the responses by version of the requests sent after
	// the step returned, until the next began.
	After map[string]int64 `json:"after"`
}

// deployService is the benchmark's service and host name.
const deployService = "demo"

// Deploy runs berth's blue-green deploys under load, as berth up does, in
// one process: the embedded store and runtime, the registrar (berth up's 2 s drain),
// the shipped nginx template and a real nginx on a free loopback port, and
// the deploy service behind the daemon API. Images demo:v1, v2 and v3 are
// busybox httpd serving their version (their own content, so their
// digests differ). It deploys v1 with replicas containers, starts a
// continuous load through nginx (keep-alive and new connections, about
// 125 req/s each), then deploys v2, rolls back, and deploys v3 whose
// health check fails, and reports every request's outcome. Needs root,
// nginx and busybox-static; everything it creates is removed.
func Deploy(ctx context.Context, replicas int, log *slog.Logger) (DeployResult, error) {
	return offMain(func() (DeployResult, error) { return benchDeploy(ctx, replicas, log) })
}

func benchDeploy(ctx context.Context, replicas int, log *slog.Logger) (res DeployResult, err error) {
	res.Replicas = replicas
	rig, err := newE2ERig(ctx, "bdep", 252, "nginx.tmpl")
	if err != nil {
		return res, err
	}
	defer rig.Close()
	for _, v := range []string{"v1", "v2", "v3"} {
		if err := rig.Image(ctx, deployService+":"+v, v+"\n"); err != nil {
			return res, err
		}
	}
	if err := rig.Start(ctx, daemon.Config{Registrar: registrar.Config{Host: "bench", Drain: daemon.DefaultDrain}}); err != nil {
		return res, err
	}
	client := rig.Client

	spec := func(v, health string) deploy.Spec {
		return deploy.Spec{Image: deployService + ":" + v, Replicas: replicas, Container: runtime.Spec{
			// httpd as pid 1 would ignore SIGTERM: a shell that exits on it.
			Cmd: []string{"/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"},
			Env: []string{"VIRTUAL_HOST=" + deployService + ".localhost"},
			Health: &runtime.HealthCheck{Cmd: []string{"/bin/sh", "-c", health}, Interval: 200 * time.Millisecond,
				Timeout: time.Second, Retries: 2},
		}}
	}
	const healthy, failing = "test -f /www/index.html", "exit 1"
	res.Steps = make([]DeployStep, 0, 3) // After pointers into it stay valid
	ld := newLoad(rig.Nginx.Addr, deployService+".localhost")
	// after is the step whose After counts the responses now: the last
	// one that returned, none while a step runs (guarded by ld.mu).
	var after *DeployStep
	setAfter := func(st *DeployStep) {
		ld.mu.Lock()
		defer ld.mu.Unlock()
		after = st
	}
	rollout := func(name string, call func() (deploy.Revision, error)) (deploy.Revision, error) {
		setAfter(nil)
		t0 := time.Now()
		rev, err := call()
		step := DeployStep{Name: name, Revision: rev.Number, Outcome: string(rev.Outcome), Seconds: time.Since(t0).Seconds(), After: map[string]int64{}}
		if err != nil {
			step.Reason = err.Error()
		}
		res.Steps = append(res.Steps, step)
		setAfter(&res.Steps[len(res.Steps)-1])
		log.Info("bench deploy: step done", "step", name, "revision", rev.Number, "outcome", rev.Outcome, "took", time.Since(t0).Round(time.Millisecond))
		return rev, err
	}
	deployVersion := func(v, health string) func() (deploy.Revision, error) {
		return func() (deploy.Revision, error) {
			return client.Deploy(ctx, deploy.Request{Service: deployService, Spec: spec(v, health), Timeout: 30 * time.Second}, nil)
		}
	}
	if _, err := deployVersion("v1", healthy)(); err != nil {
		return res, fmt.Errorf("deploy v1: %w", err)
	}
	// nginx reloads asynchronously: its old workers may answer a moment
	// longer. v1 is served once a run of probes all get it.
	run := 0
	if err := waitFor(ctx, 30*time.Second, func() bool {
		if run++; ld.probe() != "v1" {
			run = 0
		}
		return run >= 50
	}); err != nil {
		return res, fmt.Errorf("nginx never served v1: %w", err)
	}
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := ld.run(lctx, func() *DeployStep { return after })
	time.Sleep(time.Second) // v1 under load first
	rev, err := rollout("deploy v2", deployVersion("v2", healthy))
	if err == nil {
		res.DeploySec, res.SwitchSec = rev.Serving.Sub(rev.Started).Seconds(), rev.Finished.Sub(rev.Started).Seconds()
		time.Sleep(time.Second)
		_, err = rollout("rollback", func() (deploy.Revision, error) {
			return client.Rollback(ctx, deploy.RollbackRequest{Service: deployService, Timeout: 30 * time.Second}, nil)
		})
	}
	if err == nil {
		time.Sleep(time.Second)
		if _, err3 := rollout("deploy v3 (failing health check)", deployVersion("v3", failing)); err3 == nil {
			err = errors.New("deploy v3 succeeded although its health check fails")
		}
		time.Sleep(time.Second)
	}
	stopLoad()
	<-loadDone
	res.Requests, res.FailedRequests = ld.requests.Load(), ld.failed.Load()
	res.Versions, res.Failures = ld.totals()
	if res.FailedRequests > 0 {
		var upstream []string
		for _, l := range strings.Split(rig.Nginx.ErrorLog(), "\n") {
			if strings.Contains(l, "upstream") || strings.Contains(l, "[error]") || strings.Contains(l, "[alert]") || strings.Contains(l, "[warn]") {
				upstream = append(upstream, "nginx: "+l)
			}
		}
		res.Failures = append(res.Failures, upstream[max(0, len(upstream)-5):]...)
	}
	return res, err
}

// load is a continuous HTTP load through nginx: one client on keep-alive
// connections, one on a new connection per request.
type load struct {
	addr, host        string
	requests, failed  atomic.Int64
	mu                sync.Mutex
	versions          map[string]int64
	failures          []string
	keepAlive, oneOff *http.Client
}

func newLoad(addr, host string) *load {
	return &load{addr: addr, host: host, versions: map[string]int64{},
		keepAlive: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
		oneOff:    &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
}

// probe is one request on a new connection: the version served, or "".
func (l *load) probe() string {
	v, _ := l.get(context.Background(), l.oneOff)
	return v
}

func (l *load) get(ctx context.Context, c *http.Client) (string, error) {
	a, err := realparts.Get(ctx, c, l.addr, l.host)
	if err != nil {
		return "", err
	}
	if a.Code >= 500 {
		return "", fmt.Errorf("HTTP %d", a.Code)
	}
	return a.Body, nil
}

// run sends requests every 8 ms from each client until ctx ends; each
// response is counted, and in the step current when it came (current is
// called under l.mu).
func (l *load) run(ctx context.Context, current func() *DeployStep) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range []*http.Client{l.keepAlive, l.oneOff} {
		wg.Go(func() {
			tick.Every(ctx, 8*time.Millisecond, func() {
				v, err := l.get(context.WithoutCancel(ctx), c)
				l.requests.Add(1)
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if len(l.failures) < 10 {
						l.failures = append(l.failures, fmt.Sprintf("%s: %v", time.Now().Format(time.StampMilli), err))
					}
				} else {
					l.versions[v]++
					if step := current(); step != nil {
						step.After[v]++
					}
				}
				l.mu.Unlock()
			})
		})
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

func (l *load) totals() (map[string]int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.versions, l.failures
}
