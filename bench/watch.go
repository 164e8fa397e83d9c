package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// WatchResult is the JSON of berth bench watch; its field names are
// part of berth's interface.
type WatchResult struct {
	Services     int     `json:"services"`
	Changes      int     `json:"changes"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	FloorP50Ms   float64 `json:"floor_p50_ms"`
	FloorP99Ms   float64 `json:"floor_p99_ms"`
	RenderMs     float64 `json:"render_ms"` // the template alone over the loaded data (median of 5)
	ChurnRate    float64 `json:"churn_rate"`
	ChurnRenders int     `json:"churn_renders"`
	ChurnCPUS    float64 `json:"churn_cpu_s"`
	// ChurnFloorCPUS is the same churn with no watcher running: what the
	// store (in this process when embedded) and the load generator cost.
	ChurnFloorCPUS float64 `json:"churn_floor_cpu_s"`
	MaxRSSMB       float64 `json:"max_rss_mb"`
	FinalMatch     bool    `json:"final_match"`
	// Natural is the same run over the peer workload (ten instances per
	// service under <prefix>/natural/<svc>/<id>, values {"host","port"})
	// with the template users write for it: lsdir, tree, fromJson.
	Natural TemplateResult `json:"natural"`
}

// TemplateResult is change→file latency, render time and churn of one
// more template and its workload.
type TemplateResult struct {
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	RenderMs     float64 `json:"render_ms"`
	ChurnRenders int     `json:"churn_renders"`
	ChurnCPUS    float64 `json:"churn_cpu_s"`
	FinalMatch   bool    `json:"final_match"`
}

// benchWatchTemplate is an nginx-style upstream list over every service;
// its first line carries the revision it was rendered at, which is how the
// benchmark sees that a change reached the file.
const benchWatchTemplate = `# revision {{ .Revision }}
{{- range $name, $instances := .Services }}
upstream {{ $name }} {
{{- range $instances }}
    server {{ .IP }}:{{ .Port }};
{{- end }}
}
{{- end }}
`

// benchNaturalTemplate is the template a user writes for the peer
// workload (issue #14), with the revision line the benchmark reads.
const benchNaturalTemplate = `# revision {{ .Revision }}
{{- range $name := lsdir "/berth-bench-watch/natural" }}
upstream {{ $name }} {
{{- range tree (printf "berth-bench-watch/natural/%s" $name) }}{{ with .Value | fromJson }}
    server {{ .host }}:{{ .port }};
{{- end }}{{ end }}
}
{{- end }}
`

const benchWatchPrefix = "/berth-bench-watch"

// workload is one template and the keys it renders.
type workload struct {
	name     string
	text     string
	prefix   string // the watched prefix
	key      func(i int) string
	value    func(i, port int) []byte
	services int
}

// berthWorkload is berth's own records rendered through .Services.
func berthWorkload(n int) workload {
	svc := func(i int) string { return fmt.Sprintf("svc%03d", i%100) }
	return workload{
		name: "upstreams", text: benchWatchTemplate, prefix: records.ServicesPrefix(benchWatchPrefix), services: n,
		key: func(i int) string { return records.ServiceKey(benchWatchPrefix, svc(i), "h1", fmt.Sprintf("c%06d", i)) },
		value: func(i, port int) []byte {
			v, _ := json.Marshal(records.Instance{ID: fmt.Sprintf("c%06d", i), Service: svc(i), Host: "h1",
				IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: port, State: records.StateRunning})
			return v
		},
	}
}

// naturalWorkload is the peer harness's: ten instances per service.
func naturalWorkload(n int) workload {
	return workload{
		name: "natural", text: benchNaturalTemplate, prefix: benchWatchPrefix + "/natural/", services: n,
		key: func(i int) string { return fmt.Sprintf("%s/natural/svc-%04d/i-%06d", benchWatchPrefix, i/10, i) },
		value: func(i, port int) []byte {
			return fmt.Appendf(nil, `{"host":"127.%d.%d.%d","port":%d}`, i>>16&255, i>>8&255, i&255, port)
		},
	}
}

// WatchConfig is what Watch measures.
type WatchConfig struct {
	Services int           // instances to load
	Changes  int           // single changes to time
	Rate     float64       // churn: changes per second
	Duration time.Duration // churn: how long
	// Dir holds the template and its output (a temporary directory when
	// empty).
	Dir string
}

// Watch loads cfg.Services instances into st (under /berth-bench-watch/,
// deleted afterwards) and measures in one run: change→file latency over
// cfg.Changes single changes through berth's watch pipeline (wait
// disabled), the floor of a bare store watch writing the changed key to a
// file, the CPU cost and render count of cfg.Rate changes/s for
// cfg.Duration with wait "50ms:200ms" (and the same churn with no watcher),
// and the process's peak RSS. The latency, render time and churn are
// measured again (Natural) for the template users write for the peer
// workload, over cfg.Services more instances of that shape.
func Watch(ctx context.Context, st store.Store, cfg WatchConfig, log *slog.Logger) (WatchResult, error) {
	dir := cfg.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "berth-bench-watch-")
		if err != nil {
			return WatchResult{}, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	b := &watchBench{st: st, dir: dir, log: log}
	return b.run(ctx, cfg.Services, cfg.Changes, cfg.Rate, cfg.Duration)
}

type watchBench struct {
	st  store.Store
	dir string
	log *slog.Logger
}

func (b *watchBench) put(ctx context.Context, w workload, i, port int) (store.Revision, error) {
	return b.st.Put(ctx, w.key(i), w.value(i, port))
}

// load puts w's instances, 64 to a transaction.
func (b *watchBench) load(ctx context.Context, w workload) error {
	ops := make([]store.Op, 0, 64)
	for i := range w.services {
		ops = append(ops, store.Put(w.key(i), w.value(i, 8080)))
		if len(ops) == cap(ops) || i == w.services-1 {
			if _, err := b.st.Txn(ctx, ops...); err != nil {
				return fmt.Errorf("load %s: %w", w.name, err)
			}
			ops = ops[:0]
		}
	}
	return nil
}

// template is w's template with wait, its source written to the bench
// directory.
func (b *watchBench) template(w workload, wait config.Wait) (config.Template, error) {
	src := filepath.Join(b.dir, w.name+".tmpl")
	if err := os.WriteFile(src, []byte(w.text), 0o644); err != nil {
		return config.Template{}, err
	}
	return config.Template{
		Name: w.name, Src: src, Origin: "bench",
		Options:  dialect.Options{Dialect: dialect.Native, Prefix: benchWatchPrefix},
		Prefixes: []string{w.prefix},
		Wait:     wait,
		Spec:     render.Spec{Name: w.name, Dest: filepath.Join(b.dir, w.name+".conf")},
	}, nil
}

func (b *watchBench) run(ctx context.Context, services, changes int, rate float64, churn time.Duration) (WatchResult, error) {
	res := WatchResult{Services: services, Changes: changes, ChurnRate: rate}
	if _, err := b.st.Delete(ctx, benchWatchPrefix+"/", store.WithPrefix()); err != nil {
		return res, err
	}
	defer b.st.Delete(context.WithoutCancel(ctx), benchWatchPrefix+"/", store.WithPrefix())
	own, natural := berthWorkload(services), naturalWorkload(services)
	for _, w := range []workload{own, natural} {
		if err := b.load(ctx, w); err != nil {
			return res, err
		}
	}
	nowait := config.Wait{}
	churnWait := config.Wait{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}

	// berth's own template: render, change→file, floor, churn.
	t, err := b.template(own, nowait)
	if err != nil {
		return res, err
	}
	if res.RenderMs, err = b.renderTime(ctx, t); err != nil {
		return res, err
	}
	lat, err := b.latency(ctx, own, t, changes, func(ctx context.Context) (func(), error) { return b.startRunner(ctx, t) })
	if err != nil {
		return res, fmt.Errorf("change→file: %w", err)
	}
	res.P50Ms, res.P90Ms, res.P99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 90)), ms(percentile(lat, 99))

	// The floor: a bare watch writing the changed key to the same file.
	lat, err = b.latency(ctx, own, t, changes, func(ctx context.Context) (func(), error) { return b.startFloor(ctx, own, t.Spec.Dest) })
	if err != nil {
		return res, fmt.Errorf("floor: %w", err)
	}
	res.FloorP50Ms, res.FloorP99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 99))

	if t, err = b.template(own, churnWait); err != nil {
		return res, err
	}
	cr, err := b.churn(ctx, own, t, rate, churn)
	if err != nil {
		return res, fmt.Errorf("churn: %w", err)
	}
	res.ChurnRate, res.ChurnRenders, res.ChurnCPUS, res.FinalMatch = cr.rate, cr.renders, cr.cpu, cr.match

	// The natural template over the peer workload.
	if t, err = b.template(natural, nowait); err != nil {
		return res, err
	}
	if res.Natural.RenderMs, err = b.renderTime(ctx, t); err != nil {
		return res, err
	}
	if lat, err = b.latency(ctx, natural, t, changes, func(ctx context.Context) (func(), error) { return b.startRunner(ctx, t) }); err != nil {
		return res, fmt.Errorf("natural change→file: %w", err)
	}
	res.Natural.P50Ms, res.Natural.P90Ms, res.Natural.P99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 90)), ms(percentile(lat, 99))
	if t, err = b.template(natural, churnWait); err != nil {
		return res, err
	}
	if cr, err = b.churn(ctx, natural, t, rate, churn); err != nil {
		return res, fmt.Errorf("natural churn: %w", err)
	}
	res.Natural.ChurnRenders, res.Natural.ChurnCPUS, res.Natural.FinalMatch = cr.renders, cr.cpu, cr.match

	// The churn floor: the same churn with no watcher.
	var before, during syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	if _, err := b.generate(ctx, own, rate, churn, 5); err != nil {
		return res, err
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &during)
	res.ChurnFloorCPUS = cpuSeconds(during) - cpuSeconds(before)

	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	res.MaxRSSMB = float64(ru.Maxrss) / 1024
	return res, nil
}

// renderTime is the template's own cost over the loaded data, as the
// pipeline pays it on a change: the median of nine executions of a
// template that has rendered the data once already (its memo warm), into
// one reused buffer.
func (b *watchBench) renderTime(ctx context.Context, c config.Template) (float64, error) {
	kvs, rev, err := b.st.List(ctx, c.Prefixes[0])
	if err != nil {
		return 0, err
	}
	t, err := dialect.Parse(c.Src, c.Options)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, dialect.Input{Revision: rev, KVs: kvs}); err != nil {
		return 0, err
	}
	var runs []time.Duration
	for range 9 {
		buf.Reset()
		start := time.Now()
		if err := t.Execute(&buf, dialect.Input{Revision: rev, KVs: kvs}); err != nil {
			return 0, err
		}
		runs = append(runs, time.Since(start))
	}
	return ms(percentile(runs, 50)), nil
}

// startRunner runs berth's watch pipeline on t until the returned stop.
func (b *watchBench) startRunner(ctx context.Context, t config.Template) (func(), error) {
	r := runner.New(b.st, render.New(render.WithLogger(b.log)), runner.WithLogger(b.log),
		runner.WithMirrorOptions(watcher.WithResync(0)))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, []config.Template{t}) }()
	return func() { cancel(); <-done }, nil
}

// startFloor is the floor: one watch on the prefix, writing each change's
// revision and key to the file, nothing else.
func (b *watchBench) startFloor(ctx context.Context, w workload, dest string) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	_, rev, err := b.st.List(ctx, w.prefix)
	if err != nil {
		cancel()
		return nil, err
	}
	ch := b.st.Watch(ctx, w.prefix, rev)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for resp := range ch {
			for _, ev := range resp.Events {
				os.WriteFile(dest, fmt.Appendf(nil, "# revision %d\n%s\n", ev.KV.ModRevision, ev.KV.Key), 0o644)
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

// latency starts a pipeline, waits for its first output, then times
// changes single changes from put to the file carrying the put's revision.
func (b *watchBench) latency(ctx context.Context, w workload, t config.Template, changes int, start func(context.Context) (func(), error)) ([]time.Duration, error) {
	obs, err := newFileObserver(t.Spec.Dest)
	if err != nil {
		return nil, err
	}
	defer obs.close()
	os.Remove(t.Spec.Dest)
	stop, err := start(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	// Make sure the pipeline is up: a first change must come through.
	rev, err := b.put(ctx, w, 0, 1)
	if err != nil {
		return nil, err
	}
	if err := obs.await(rev, 60*time.Second); err != nil {
		return nil, fmt.Errorf("pipeline did not start: %w", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 0, changes)
	for i := range changes {
		begin := time.Now()
		rev, err := b.put(ctx, w, rng.IntN(w.services), 20000+i)
		if err != nil {
			return nil, err
		}
		if err := obs.await(rev, 30*time.Second); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(begin))
	}
	return lat, nil
}

// churnResult is what one churn measured.
type churnResult struct {
	rate    float64
	renders int
	cpu     float64
	match   bool
}

// churn runs the pipeline with quiescence under a steady rate of changes.
func (b *watchBench) churn(ctx context.Context, w workload, t config.Template, rate float64, d time.Duration) (churnResult, error) {
	var res churnResult
	r := runner.New(b.st, render.New(render.WithLogger(b.log)), runner.WithLogger(b.log),
		runner.WithMirrorOptions(watcher.WithResync(0)))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx, []config.Template{t}) }()
	defer func() {
		cancel()
		<-done
	}()

	startStatus, err := waitRendered(ctx, r)
	if err != nil {
		return res, err
	}
	var before syscall.Rusage // the churn window only: not the first sync, not the final check
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	if res.rate, err = b.generate(ctx, w, rate, d, 3); err != nil {
		return res, err
	}
	var during syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &during)
	// Let the last burst settle (max wait plus a render), then compare.
	kvs, rev, err := b.st.List(ctx, w.prefix)
	if err != nil {
		return res, err
	}
	want, err := renderOnce(t, dialect.Input{Revision: rev, KVs: kvs})
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got, _ := os.ReadFile(t.Spec.Dest)
		// The revision line may differ (a render after the last change can
		// carry a later revision); the rest must match exactly.
		if bytes.Equal(dropFirstLine(got), dropFirstLine(want)) {
			res.match = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.cpu = cpuSeconds(during) - cpuSeconds(before)
	ss, err := r.Status(ctx)
	if err != nil {
		return res, err
	}
	res.renders = ss[0].Renders - startStatus.Renders
	return res, nil
}

// generate puts changes at rate for d through a paced producer and a few
// writers (one put at a time cannot reach 1,000/s when a put takes a
// millisecond or more), and returns the rate achieved.
func (b *watchBench) generate(ctx context.Context, wl workload, rate float64, d time.Duration, seed uint64) (float64, error) {
	const writers = 8
	work := make(chan [2]int, writers)
	errc := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for w := range work {
				if _, err := b.put(ctx, wl, w[0], w[1]); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(seed, 4))
	interval := time.Duration(float64(time.Second) / rate)
	begin := time.Now()
	puts := 0
	for next := begin; next.Before(begin.Add(d)); next = next.Add(interval) {
		time.Sleep(time.Until(next))
		work <- [2]int{rng.IntN(wl.services), 30000 + puts%30000}
		puts++
	}
	close(work)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(puts) / time.Since(begin).Seconds(), nil
}

func waitRendered(ctx context.Context, r *runner.Runner) (runner.TemplateStatus, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ss, err := r.Status(ctx)
		if err != nil {
			return runner.TemplateStatus{}, err
		}
		if len(ss) == 1 && !ss[0].LastRender.IsZero() {
			return ss[0], nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return runner.TemplateStatus{}, errors.New("no first render within 60s")
}

func renderOnce(t config.Template, in dialect.Input) ([]byte, error) {
	tm, err := dialect.Parse(t.Src, t.Options)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = tm.Execute(&buf, in)
	return buf.Bytes(), err
}

func dropFirstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return nil
}

func cpuSeconds(ru syscall.Rusage) float64 {
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// fileObserver sees a file replaced or written (through its directory) and
// reads the revision on its first line.
type fileObserver struct {
	path string
	fsw  *fsnotify.Watcher
}

func newFileObserver(path string) (*fileObserver, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fsw.Add(filepath.Dir(path)); err != nil {
		fsw.Close()
		return nil, err
	}
	return &fileObserver{path: path, fsw: fsw}, nil
}

func (o *fileObserver) close() { o.fsw.Close() }

// await returns once the file carries revision rev or later.
func (o *fileObserver) await(rev store.Revision, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		if o.revision() >= rev {
			return nil
		}
		select {
		case <-o.fsw.Events:
		case err := <-o.fsw.Errors:
			return err
		case <-t.C:
			return fmt.Errorf("file %s did not reach revision %d within %s (at %d)", o.path, rev, timeout, o.revision())
		}
	}
}

func (o *fileObserver) revision() store.Revision {
	f, err := os.Open(o.path)
	if err != nil {
		return 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "# revision")), 10, 64)
	return store.Revision(n)
}
