package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/templates"
)

// liveInput is the bench e2e workload at n virtual hosts: one record per
// host, plus the measured host's base server, as the registrar writes them.
func liveInput(n int) dialect.Input {
	var kvs []store.KV
	for i := -1; i < n; i++ {
		host, id := "bench.localhost", "static-base"
		if i >= 0 {
			host, id = fmt.Sprintf("v%d.bench.localhost", i), fmt.Sprintf("static-%d", i)
		}
		in := records.Instance{ID: id, Name: id, Service: "static", Host: "static", IP: "127.0.0.1", Port: 8080,
			Env: map[string]string{"VIRTUAL_HOST": host}, State: records.StateRunning, Weight: 1}
		b, _ := json.Marshal(in)
		kvs = append(kvs, store.KV{Key: records.ServiceKey(records.DefaultPrefix, "static", "static", id), Value: b, ModRevision: store.Revision(i + 2)})
	}
	slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return dialect.Input{Revision: store.Revision(n + 1), KVs: kvs, Env: map[string]string{}}
}

// withContainer returns in with a container of the measured host added
// (i odd) or removed (i even): a start or a stop.
func withContainer(in dialect.Input, i int) dialect.Input {
	rev := in.Revision + 1
	key := records.ServiceKey(records.DefaultPrefix, "web", "bench", "c0")
	kvs := slices.DeleteFunc(slices.Clone(in.KVs), func(kv store.KV) bool { return kv.Key == key })
	if i%2 == 1 {
		rec := records.Instance{ID: "c0", Name: "c0", Service: "web", Host: "bench", IP: "10.0.3.2", Port: 80,
			Env: map[string]string{"VIRTUAL_HOST": "bench.localhost"}, State: records.StateRunning, Weight: 1}
		b, _ := json.Marshal(rec)
		kvs = append(kvs, store.KV{Key: key, Value: b, ModRevision: rev})
		slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	}
	return dialect.Input{Revision: rev, KVs: kvs, Env: in.Env}
}

// BenchmarkLiveBuild is what follow does for every change at 100 and
// 1,000 virtual hosts: the endpoint set of the new snapshot, from a
// container starting or stopping (the up path of bench e2e with live
// endpoints, before the sink).
func BenchmarkLiveBuild(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dec := decoder(config.Template{Name: "bench", Options: dialect.Options{Dialect: dialect.Native}})
			in := liveInput(n)
			var b0 endpoints.Builder
			if _, ok := build(dec, &b0, in, 1); !ok {
				b.Fatal("no set")
			}
			eachChange(b, in, func(in dialect.Input, i int) {
				set, ok := build(dec, &b0, in, uint64(i))
				if !ok || len(set.Upstreams) != n+1 {
					b.Fatal(ok, len(set.Upstreams))
				}
			})
		})
	}
}

// BenchmarkLiveRender is the render loop's execution of the shipped
// nginx-lua.tmpl (live = "nginx-lua") for every change at 100 and 1,000
// virtual hosts: a container of the measured host starting or stopping,
// the structure unchanged (the file stays byte-identical).
func BenchmarkLiveRender(b *testing.B) {
	src, err := fs.ReadFile(templates.Files(), "nginx-lua.tmpl")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tm, err := dialect.ParseString("nginx-lua.tmpl", string(src), dialect.Options{Dialect: dialect.Native})
			if err != nil {
				b.Fatal(err)
			}
			in := liveInput(n)
			in.Env = map[string]string{"BERTH_LIVE": "nginx-lua", "BERTH_LIVE_DIR": "/run/berth/live"}
			var last endpoints.Set
			var first []byte
			render := func(in dialect.Input) []byte {
				in.Endpoints = func(s endpoints.Set) { last = s }
				in.EndpointOptions = []endpoints.Option{endpoints.WithConfigServers(last)}
				var buf bytes.Buffer
				if err := tm.Execute(&buf, in); err != nil {
					b.Fatal(err)
				}
				return buf.Bytes()
			}
			first = render(in)
			eachChange(b, in, func(in dialect.Input, _ int) {
				if out := render(in); !bytes.Equal(out, first) {
					b.Fatal("the structure changed")
				}
			})
		})
	}
}

// eachChange runs op once per iteration on in changed once more (a
// container started or stopped: withContainer), reporting allocations and
// CPU time per op.
func eachChange(b *testing.B, in dialect.Input, op func(in dialect.Input, i int)) {
	b.ReportAllocs()
	defer cpuPerOp(b)()
	i := 0
	for b.Loop() {
		i++
		in = withContainer(in, i)
		op(in, i)
	}
}

// cpuPerOp starts counting the process's CPU time (user and system, the
// garbage collector's included); the function it returns reports it per
// op as cpu-ns/op. On a machine shared with other work, wall time per op
// swings with the load, CPU time much less.
func cpuPerOp(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
