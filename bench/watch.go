package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

const benchWatchPrefix = "/berth-bench-watch"

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
// and the process's peak RSS.
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
	b := &watchBench{st: st, dir: dir, log: log, services: cfg.Services}
	return b.run(ctx, cfg.Changes, cfg.Rate, cfg.Duration)
}

type watchBench struct {
	st       store.Store
	dir      string
	log      *slog.Logger
	services int
}

func (b *watchBench) instanceKey(i int) string {
	return records.ServiceKey(benchWatchPrefix, fmt.Sprintf("svc%03d", i%100), "h1", fmt.Sprintf("c%06d", i))
}

func (b *watchBench) put(ctx context.Context, i, port int) (store.Revision, error) {
	v, _ := json.Marshal(records.Instance{
		ID: fmt.Sprintf("c%06d", i), Service: fmt.Sprintf("svc%03d", i%100), Host: "h1",
		IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: port, State: records.StateRunning,
	})
	return b.st.Put(ctx, b.instanceKey(i), v)
}

func (b *watchBench) run(ctx context.Context, changes int, rate float64, churn time.Duration) (WatchResult, error) {
	res := WatchResult{Services: b.services, Changes: changes, ChurnRate: rate}
	if _, err := b.st.Delete(ctx, benchWatchPrefix+"/", store.WithPrefix()); err != nil {
		return res, err
	}
	defer b.st.Delete(context.WithoutCancel(ctx), benchWatchPrefix+"/", store.WithPrefix())
	ops := make([]store.Op, 0, 64)
	for i := range b.services {
		v, _ := json.Marshal(records.Instance{ID: fmt.Sprintf("c%06d", i), Service: fmt.Sprintf("svc%03d", i%100), Host: "h1",
			IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: 8080, State: records.StateRunning})
		ops = append(ops, store.Put(b.instanceKey(i), v))
		if len(ops) == cap(ops) || i == b.services-1 {
			if _, err := b.st.Txn(ctx, ops...); err != nil {
				return res, fmt.Errorf("load: %w", err)
			}
			ops = ops[:0]
		}
	}
	src := filepath.Join(b.dir, "upstreams.tmpl")
	if err := os.WriteFile(src, []byte(benchWatchTemplate), 0o644); err != nil {
		return res, err
	}
	tmpl := func(wait config.Wait) config.Template {
		return config.Template{
			Name: "bench", Src: src, Origin: "bench",
			Options:  dialect.Options{Dialect: dialect.Native, Prefix: benchWatchPrefix},
			Prefixes: []string{records.ServicesPrefix(benchWatchPrefix)},
			Wait:     wait,
			Spec:     render.Spec{Name: "bench", Dest: filepath.Join(b.dir, "upstreams.conf")},
		}
	}
	var err error
	if res.RenderMs, err = b.renderTime(ctx, src); err != nil {
		return res, err
	}

	// change→file through berth, wait disabled.
	lat, err := b.latency(ctx, tmpl(config.Wait{}), changes, func(ctx context.Context) (func(), error) {
		return b.startRunner(ctx, tmpl(config.Wait{}))
	})
	if err != nil {
		return res, fmt.Errorf("change→file: %w", err)
	}
	res.P50Ms, res.P90Ms, res.P99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 90)), ms(percentile(lat, 99))

	// The floor: a bare watch writing the changed key to the same file.
	lat, err = b.latency(ctx, tmpl(config.Wait{}), changes, b.startFloor)
	if err != nil {
		return res, fmt.Errorf("floor: %w", err)
	}
	res.FloorP50Ms, res.FloorP99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 99))

	// Churn with wait 50ms:200ms.
	if err := b.churn(ctx, tmpl(config.Wait{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}), rate, churn, &res); err != nil {
		return res, fmt.Errorf("churn: %w", err)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	res.MaxRSSMB = float64(ru.Maxrss) / 1024
	return res, nil
}

// renderTime is the template's own cost over the loaded data: the median of
// five executions.
func (b *watchBench) renderTime(ctx context.Context, src string) (float64, error) {
	kvs, rev, err := b.st.List(ctx, records.ServicesPrefix(benchWatchPrefix))
	if err != nil {
		return 0, err
	}
	t, err := dialect.Parse(src, dialect.Options{Dialect: dialect.Native, Prefix: benchWatchPrefix})
	if err != nil {
		return 0, err
	}
	var runs []time.Duration
	for range 5 {
		start := time.Now()
		if err := t.Execute(io.Discard, dialect.Input{Revision: rev, KVs: kvs}); err != nil {
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
func (b *watchBench) startFloor(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	dest := filepath.Join(b.dir, "upstreams.conf")
	_, rev, err := b.st.List(ctx, records.ServicesPrefix(benchWatchPrefix))
	if err != nil {
		cancel()
		return nil, err
	}
	ch := b.st.Watch(ctx, records.ServicesPrefix(benchWatchPrefix), rev)
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
func (b *watchBench) latency(ctx context.Context, t config.Template, changes int, start func(context.Context) (func(), error)) ([]time.Duration, error) {
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
	rev, err := b.put(ctx, 0, 1)
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
		rev, err := b.put(ctx, rng.IntN(b.services), 20000+i)
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

// churn runs the pipeline with quiescence under a steady rate of changes.
func (b *watchBench) churn(ctx context.Context, t config.Template, rate float64, d time.Duration, res *WatchResult) error {
	r := runner.New(b.st, render.New(render.WithLogger(b.log)), runner.WithLogger(b.log),
		runner.WithMirrorOptions(watcher.WithResync(0)))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx, []config.Template{t}) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	startStatus, err := waitRendered(ctx, r)
	if err != nil {
		return err
	}
	var before syscall.Rusage // the churn window only: not the first sync, not the final check
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	if res.ChurnRate, err = b.generate(ctx, rate, d, 3); err != nil {
		return err
	}
	var during syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &during)
	// Let the last burst settle (max wait plus a render), then compare.
	kvs, rev, err := b.st.List(ctx, records.ServicesPrefix(benchWatchPrefix))
	if err != nil {
		return err
	}
	want, err := renderOnce(t, dialect.Input{Revision: rev, KVs: kvs})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got, _ := os.ReadFile(t.Spec.Dest)
		// The revision line may differ (a render after the last change can
		// carry a later revision); the rest must match exactly.
		if bytes.Equal(dropFirstLine(got), dropFirstLine(want)) {
			res.FinalMatch = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.ChurnCPUS = cpuSeconds(during) - cpuSeconds(before)
	ss, err := r.Status(ctx)
	if err != nil {
		return err
	}
	res.ChurnRenders = ss[0].Renders - startStatus.Renders
	cancel() // the floor: the same churn with no watcher
	<-done
	stopped = true
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	if _, err := b.generate(ctx, rate, d, 5); err != nil {
		return err
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &during)
	res.ChurnFloorCPUS = cpuSeconds(during) - cpuSeconds(before)
	return nil
}

// generate puts changes at rate for d through a paced producer and a few
// writers (one put at a time cannot reach 1,000/s when a put takes a
// millisecond or more), and returns the rate achieved.
func (b *watchBench) generate(ctx context.Context, rate float64, d time.Duration, seed uint64) (float64, error) {
	const writers = 8
	work := make(chan [2]int, writers)
	errc := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for w := range work {
				if _, err := b.put(ctx, w[0], w[1]); err != nil {
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
		work <- [2]int{rng.IntN(b.services), 30000 + puts%30000}
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
