package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dedup"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/watcher"
)

// ClusterConfig sizes berth bench cluster.
type ClusterConfig struct {
	Hosts     int           // etcd members, one per host (≥ 2)
	Changes   int           // timed changes per figure
	Renderers []int         // renderer counts of the store-load figures
	TTL       time.Duration // the dedup lease; a partition lasts TTL + 2 s
	Dir       string        // scratch directory
}

// ClusterResult is the JSON of berth bench cluster; its field names are
// part of berth's interface. StoreOpsPerChange[i] (and its dedup twin) is
// for Renderers[i] renderers of one template.
type ClusterResult struct {
	Hosts       int     `json:"hosts"`
	Renderers   []int   `json:"renderers"`
	RemoteP50Ms float64 `json:"remote_p50_ms"`
	RemoteP99Ms float64 `json:"remote_p99_ms"`
	LocalP50Ms  float64 `json:"local_p50_ms"`
	// StoreOpsPerChange are the gRPC messages the etcd members received
	// and sent per change for the renderers (the writer's own, lease
	// keep-alives and the idle traffic subtracted).
	StoreOpsPerChange      []float64 `json:"store_ops_per_change"`
	StoreOpsPerChangeDedup []float64 `json:"store_ops_per_change_dedup"`
	HealConvergeMs         float64   `json:"heal_converge_ms"`
}

// Cluster measures many hosts sharing one etcd cluster, each host a
// store client of its own member (loopback), each renderer the runner
// with its own client:
//   - change → file, p50/p99, on a host other than the writer's against
//     the writer's own;
//   - store messages per change for each renderer count, with and
//     without dedup (its followers taking the outputs peer to peer, on
//     loopback), counted by the members (grpc_server_msg_*_total);
//   - after a partition of the dedup leader's host (its member stopped
//     with SIGSTOP for TTL + 2 s, during which a change is made and another
//     host takes over), the time from the heal until its file is current.
func Cluster(ctx context.Context, cfg ClusterConfig, log *slog.Logger) (ClusterResult, error) {
	if cfg.Hosts < 2 || cfg.Changes <= 0 || len(cfg.Renderers) == 0 || cfg.TTL <= 0 {
		return ClusterResult{}, errors.New("bench cluster: hosts ≥ 2, changes, renderers and ttl must be set")
	}
	ec, err := realparts.StartEtcd(cfg.Hosts)
	if err != nil {
		return ClusterResult{}, err
	}
	defer ec.Stop()
	b := &clusterBench{cfg: cfg, ec: ec, log: log}
	defer b.closeAll()
	res := ClusterResult{Hosts: cfg.Hosts, Renderers: cfg.Renderers}
	if err := b.latency(ctx, &res); err != nil {
		return res, fmt.Errorf("latency: %w", err)
	}
	writer, err := b.writerOps(ctx)
	if err != nil {
		return res, fmt.Errorf("store load: %w", err)
	}
	for _, withDedup := range []bool{false, true} {
		for _, n := range cfg.Renderers {
			ops, err := b.storeOps(ctx, n, withDedup, writer)
			if err != nil {
				return res, fmt.Errorf("store load, %d renderers, dedup %t: %w", n, withDedup, err)
			}
			if withDedup {
				res.StoreOpsPerChangeDedup = append(res.StoreOpsPerChangeDedup, ops)
			} else {
				res.StoreOpsPerChange = append(res.StoreOpsPerChange, ops)
			}
		}
	}
	if res.HealConvergeMs, err = b.heal(ctx); err != nil {
		return res, fmt.Errorf("partition: %w", err)
	}
	return res, nil
}

type clusterBench struct {
	cfg    ClusterConfig
	ec     *realparts.EtcdCluster
	log    *slog.Logger
	rounds int
	closed []func()
}

func (b *clusterBench) closeAll() {
	for i := len(b.closed) - 1; i >= 0; i-- {
		b.closed[i]()
	}
}

// client opens a store client of member i alone: host i's.
func (b *clusterBench) client(ctx context.Context, i int) (store.Store, error) {
	st, err := backend.Open(ctx, "etcd://"+b.ec.Endpoints()[i%len(b.ec.Members)], backend.WithLogger(b.log))
	if err != nil {
		return nil, err
	}
	b.closed = append(b.closed, func() { st.Close() })
	return st, nil
}

// clusterTemplate prints the keys of its prefix; a change shows as its
// value in the file.
const clusterTemplate = `{{ range tree "%s" }}{{ .Key }}={{ .Value }}
{{ end }}`

// renderer is one host's runner rendering one template.
type renderer struct {
	st   store.Store
	dd   *dedup.Deduper
	dest string
	stop func()
}

func (r *renderer) has(want string) bool {
	b, _ := os.ReadFile(r.dest)
	return string(b) == want
}

// startRenderer runs a runner on host i's client rendering prefix's
// template (the same text on every host).
func (b *clusterBench) startRenderer(ctx context.Context, i int, prefix string, withDedup bool) (*renderer, error) {
	st, err := b.client(ctx, i)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(b.cfg.Dir, "renderer-")
	if err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "t.tmpl")
	if err := os.WriteFile(src, fmt.Appendf(nil, clusterTemplate, prefix), 0o644); err != nil {
		return nil, err
	}
	t := config.Template{
		Name: "bench", Src: src, Origin: "bench cluster",
		Options:  dialect.Options{Dialect: dialect.Native},
		Prefixes: []string{prefix},
		Spec:     render.Spec{Name: "bench", Dest: filepath.Join(dir, "out")},
		Dedup:    withDedup,
	}
	// Each renderer's leader serves its outputs to the followers peer to
	// peer, on loopback, as berth up does on the advertise address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dd := dedup.New(st, dedup.WithTTL(b.cfg.TTL), dedup.WithHost(fmt.Sprintf("host%d", i)), dedup.WithLogger(b.log), dedup.WithPeers(ln, ""))
	keys, open := dd.Sources(nil, func(k string) runner.Source { return watcher.NewMirror(st, k, watcher.WithLogger(b.log)) })
	r := runner.New(st, render.New(render.WithLogger(b.log)), runner.WithLogger(b.log), runner.WithSources(keys, open))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := dd.Run(rctx); err != nil {
				b.log.Error("bench renderer: dedup peers", "err", err)
			}
		})
		if err := r.Run(rctx, []config.Template{t}); err != nil {
			b.log.Error("bench renderer", "err", err)
		}
		cancel()
		wg.Wait()
	}()
	stop := func() { cancel(); <-done }
	b.closed = append(b.closed, stop)
	return &renderer{st: st, dd: dd, dest: t.Spec.Dest, stop: stop}, nil
}

// round is a fresh prefix: a new template identity, no earlier keys.
func (b *clusterBench) round() string {
	b.rounds++
	return fmt.Sprintf("/bench/cluster/r%d/", b.rounds)
}

func waitAll(ctx context.Context, limit time.Duration, want string, rs []*renderer) error {
	return waitFor(ctx, limit, func() bool {
		for _, r := range rs {
			if !r.has(want) {
				return false
			}
		}
		return true
	})
}

// latency: change → file on the writer's host (local) and on the next
// host (remote), one change at a time.
func (b *clusterBench) latency(ctx context.Context, res *ClusterResult) error {
	prefix := b.round()
	w, err := b.client(ctx, 0)
	if err != nil {
		return err
	}
	if _, err := w.Put(ctx, prefix+"x", []byte("0")); err != nil {
		return err
	}
	local, err := b.startRenderer(ctx, 0, prefix, false)
	if err != nil {
		return err
	}
	remote, err := b.startRenderer(ctx, 1, prefix, false)
	if err != nil {
		return err
	}
	if err := waitAll(ctx, 30*time.Second, "x=0\n", []*renderer{local, remote}); err != nil {
		return err
	}
	var ls, rs []time.Duration
	for i := 1; i <= b.cfg.Changes; i++ {
		want := fmt.Sprintf("x=%d\n", i)
		start := time.Now()
		if _, err := w.Put(ctx, prefix+"x", []byte(strconv.Itoa(i))); err != nil {
			return err
		}
		var l, r time.Duration
		if err := waitFor(ctx, 10*time.Second, func() bool {
			if l == 0 && local.has(want) {
				l = time.Since(start)
			}
			if r == 0 && remote.has(want) {
				r = time.Since(start)
			}
			return l > 0 && r > 0
		}); err != nil {
			return err
		}
		ls, rs = append(ls, l), append(rs, r)
	}
	local.stop()
	remote.stop()
	res.LocalP50Ms, res.RemoteP50Ms, res.RemoteP99Ms = ms(percentile(ls, 50)), ms(percentile(rs, 50)), ms(percentile(rs, 99))
	return nil
}

// grpcMessages sums the gRPC messages every member received and sent,
// but for lease keep-alives.
func (b *clusterBench) grpcMessages(ctx context.Context) (float64, error) {
	var sum float64
	for _, m := range b.ec.Members {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/metrics", nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "grpc_server_msg_received_total{") && !strings.HasPrefix(line, "grpc_server_msg_sent_total{") {
				continue
			}
			// A lease's keep-alives come every third of its TTL whatever
			// changes: they are idle traffic, and counted apart from the
			// rest (whose idle rate is subtracted) they would only add
			// noise to a figure per change.
			if strings.Contains(line, `grpc_method="LeaseKeepAlive"`) {
				continue
			}
			if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				sum += v
			}
		}
		resp.Body.Close()
		if err := sc.Err(); err != nil {
			return 0, err
		}
	}
	return sum, nil
}

// changes makes cfg.Changes changes of prefix through w, each waited for
// on every renderer, and returns the store's messages per change with the
// idle rate measured before them subtracted.
func (b *clusterBench) changes(ctx context.Context, w store.Store, prefix string, rs []*renderer) (float64, error) {
	idleStart := time.Now()
	m0, err := b.grpcMessages(ctx)
	if err != nil {
		return 0, err
	}
	time.Sleep(time.Second)
	m1, err := b.grpcMessages(ctx)
	if err != nil {
		return 0, err
	}
	idleRate := (m1 - m0) / time.Since(idleStart).Seconds()
	start := time.Now()
	for i := 1; i <= b.cfg.Changes; i++ {
		if _, err := w.Put(ctx, prefix+"x", []byte(strconv.Itoa(i))); err != nil {
			return 0, err
		}
		if err := waitAll(ctx, 30*time.Second, fmt.Sprintf("x=%d\n", i), rs); err != nil {
			return 0, err
		}
	}
	time.Sleep(200 * time.Millisecond) // late messages of the last change
	m2, err := b.grpcMessages(ctx)
	if err != nil {
		return 0, err
	}
	return (m2 - m1 - idleRate*time.Since(start).Seconds()) / float64(b.cfg.Changes), nil
}

// writerOps is what a change costs the store with nobody watching.
func (b *clusterBench) writerOps(ctx context.Context) (float64, error) {
	w, err := b.client(ctx, 0)
	if err != nil {
		return 0, err
	}
	return b.changes(ctx, w, b.round(), nil)
}

// storeOps is the store messages per change that n renderers of one
// template cost, beyond the writer's.
func (b *clusterBench) storeOps(ctx context.Context, n int, withDedup bool, writer float64) (float64, error) {
	prefix := b.round()
	w, err := b.client(ctx, 0)
	if err != nil {
		return 0, err
	}
	if _, err := w.Put(ctx, prefix+"x", []byte("0")); err != nil {
		return 0, err
	}
	rs := make([]*renderer, n)
	for i := range n {
		if rs[i], err = b.startRenderer(ctx, i, prefix, withDedup); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, r := range rs {
			r.stop()
		}
	}()
	if err := waitAll(ctx, 60*time.Second, "x=0\n", rs); err != nil {
		return 0, err
	}
	// A dedup leader stores its first output for the followers that had
	// not registered and fetched it within the grace of a second: past
	// it, the start-up is over.
	time.Sleep(1500 * time.Millisecond)
	per, err := b.changes(ctx, w, prefix, rs)
	return per - writer, err
}

// heal partitions the dedup leader's host for TTL + 2 s, makes a change
// meanwhile, heals it, and returns how long its file took to be current.
func (b *clusterBench) heal(ctx context.Context) (float64, error) {
	prefix := b.round()
	rs := make([]*renderer, len(b.ec.Members))
	var err error
	for i := range rs {
		if rs[i], err = b.startRenderer(ctx, i, prefix, true); err != nil {
			return 0, err
		}
	}
	if _, err := rs[0].st.Put(ctx, prefix+"x", []byte("0")); err != nil {
		return 0, err
	}
	if err := waitAll(ctx, 60*time.Second, "x=0\n", rs); err != nil {
		return 0, err
	}
	lead := -1
	kvs, _, err := rs[0].st.List(ctx, dedup.DefaultPrefix)
	if err != nil {
		return 0, err
	}
	for _, kv := range kvs {
		var l struct{ Owner string }
		if strings.HasSuffix(kv.Key, "/leader") && json.Unmarshal(kv.Value, &l) == nil {
			for i, r := range rs {
				if r.dd.Owner() == l.Owner {
					lead = i
				}
			}
		}
	}
	if lead < 0 {
		return 0, errors.New("no dedup leader")
	}
	other := rs[(lead+1)%len(rs)]
	m := b.ec.Members[lead]
	if err := m.Freeze(); err != nil {
		return 0, err
	}
	thawed := false
	defer func() {
		if !thawed {
			m.Thaw()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	// The frozen member may be raft's leader: a write waits out the
	// election, and one that times out meanwhile is tried again.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := other.st.Put(ctx, prefix+"x", []byte("1"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(b.cfg.TTL + 2*time.Second)
	var rest []*renderer
	for i, r := range rs {
		if i != lead {
			rest = append(rest, r)
		}
	}
	if err := waitAll(ctx, 30*time.Second, "x=1\n", rest); err != nil {
		return 0, fmt.Errorf("the hosts left did not take over: %w", err)
	}
	if err := m.Thaw(); err != nil {
		return 0, err
	}
	thawed = true
	healed := time.Now()
	if err := waitAll(ctx, 60*time.Second, "x=1\n", rs[lead:lead+1]); err != nil {
		return 0, fmt.Errorf("the healed host did not converge: %w", err)
	}
	return ms(time.Since(healed)), nil
}
