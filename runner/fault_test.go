package runner_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/watcher"
)

var (
	faultSeeds = flag.Int("fault.seeds", 21, "how many fault-trial seeds to run (spread over the backends)")
	faultSeed  = flag.Int64("fault.seed", -1, "replay this one seed (on the backend it was printed with)")
	faultOps   = flag.Int("fault.ops", 120, "writes per fault trial")
)

// faultEnv is one backend under fault injection.
type faultEnv struct {
	name   string
	url    string
	faults []fault
	long   fault // the one slow fault (a freeze longer than client timeouts), or nil
}

type fault struct {
	name string
	p    float64 // probability per write
	do   func(t *testing.T, rng *rand.Rand, w store.Store)
}

func etcdFaults(t *testing.T) *faultEnv {
	cluster := testenv.StartEtcd(t, 1)
	m := cluster.Members[0]
	restart := func(t *testing.T) {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitReady(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return &faultEnv{
		name: "etcd",
		url:  cluster.URL(),
		faults: []fault{
			{"kill -9 and restart", 0.015, func(t *testing.T, rng *rand.Rand, _ store.Store) {
				m.Kill()
				time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
				restart(t)
			}},
			{"freeze", 0.015, func(t *testing.T, rng *rand.Rand, _ store.Store) {
				m.Freeze()
				time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
				m.Thaw()
			}},
			{"compact", 0.03, compactFault},
		},
		// gRPC keepalive (10s + 3s timeout) declares the frozen connection
		// dead; the watch must resume from where it was on the new one.
		long: fault{"freeze past the client's timeouts", 0, func(t *testing.T, _ *rand.Rand, _ store.Store) {
			m.Freeze()
			time.Sleep(15 * time.Second)
			m.Thaw()
		}},
	}
}

func compactFault(t *testing.T, _ *rand.Rand, w store.Store) {
	cli := w.(*etcd.Store).Client()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return // the store is unreachable right now: no compaction this time
	}
	cli.Compact(ctx, resp.Header.Revision)
}

func consulFaults(t *testing.T) *faultEnv {
	agent := testenv.StartConsul(t)
	return &faultEnv{
		name: "consul",
		url:  "consul://" + agent.Addr,
		faults: []fault{
			// A dev agent keeps its state in memory: a restart loses the data
			// and resets the index, which watches must treat as compaction.
			{"kill -9 and restart", 0.01, func(t *testing.T, _ *rand.Rand, _ store.Store) {
				if err := agent.Restart(); err != nil {
					t.Fatal(err)
				}
			}},
			{"freeze", 0.015, func(t *testing.T, rng *rand.Rand, _ store.Store) {
				agent.Freeze()
				time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
				agent.Thaw()
			}},
		},
	}
}

func embeddedFaults(t *testing.T) *faultEnv {
	dir := t.TempDir()
	server, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	// Clients join the in-process server through its endpoint file.
	return &faultEnv{name: "embedded", url: "embedded://" + dir, faults: []fault{{"compact", 0.05, compactFault}}}
}

const faultTemplate = `{{ range tree "%s" }}{{ .Key }}={{ .Value }}
{{ end }}`

// TestFaultTrials writes random puts and deletes while the store is killed
// and restarted, frozen, and compacted under a running watch; at the end the
// rendered file must equal the render of the store's final state. A failing
// seed is printed with the flags that replay it.
func TestFaultTrials(t *testing.T) {
	envs := []func(*testing.T) *faultEnv{etcdFaults, consulFaults, embeddedFaults}
	started := map[int]*faultEnv{}
	env := func(i int) *faultEnv {
		if started[i] == nil {
			started[i] = envs[i](t)
		}
		return started[i]
	}
	seeds := make([]int64, 0, *faultSeeds)
	if *faultSeed >= 0 {
		seeds = append(seeds, *faultSeed)
	} else {
		for s := range *faultSeeds {
			seeds = append(seeds, int64(s))
		}
	}
	for _, seed := range seeds {
		e := env(int(seed % int64(len(envs))))
		// The slow fault runs once per backend that has one: on its first seed.
		long := e.long.do != nil && seed < int64(len(envs))
		t.Run(fmt.Sprintf("%s/seed=%d", e.name, seed), func(t *testing.T) {
			runFaultTrial(t, e, seed, long)
		})
	}
}

func runFaultTrial(t *testing.T, e *faultEnv, seed int64, long bool) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6265727468))
	prefix := fmt.Sprintf("/fault/%d-%d/", seed, time.Now().UnixNano())
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	text := fmt.Sprintf(faultTemplate, prefix)
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	open := func() store.Store {
		st, err := backend.Open(t.Context(), e.url, backend.WithLogger(quiet), backend.WithStateDir(dir))
		if err != nil {
			t.Fatalf("seed %d: open %s: %v", seed, e.url, err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	watched, writer := open(), open()

	r := runner.New(watched, render.New(render.WithLogger(quiet)), runner.WithLogger(quiet),
		// No periodic resync: the watch and re-list paths alone must converge.
		runner.WithMirrorOptions(watcher.WithResync(0), watcher.WithBackoff(20*time.Millisecond, 500*time.Millisecond)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, []config.Template{{
			Name: "fault", Src: src, Origin: "fault trial",
			Options:  dialect.Options{Dialect: dialect.Native},
			Prefixes: []string{prefix},
			Spec:     render.Spec{Name: "fault", Dest: dest},
		}})
	}()
	defer func() { cancel(); <-done }()

	longAt := -1
	if long {
		longAt = rng.IntN(*faultOps)
	}
	var injected []string
	for i := range *faultOps {
		key := fmt.Sprintf("%sk%02d", prefix, rng.IntN(20))
		if rng.Float64() < 0.7 {
			value := fmt.Sprintf("v%d-%d", i, rng.IntN(1000))
			retry(t, seed, func(ctx context.Context) error { _, err := writer.Put(ctx, key, []byte(value)); return err })
		} else {
			retry(t, seed, func(ctx context.Context) error { _, err := writer.Delete(ctx, key); return err })
		}
		for _, f := range e.faults {
			if rng.Float64() < f.p {
				injected = append(injected, f.name)
				f.do(t, rng, writer)
			}
		}
		if i == longAt {
			injected = append(injected, e.long.name)
			e.long.do(t, rng, writer)
		}
	}

	var final []store.KV
	retry(t, seed, func(ctx context.Context) (err error) { final, _, err = writer.List(ctx, prefix); return err })
	tmpl, err := dialect.ParseString("fault", text, dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := tmpl.Execute(&want, dialect.Input{KVs: final}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, _ := os.ReadFile(dest)
		if bytes.Equal(got, want.Bytes()) {
			t.Logf("converged on %d keys after faults %v", len(final), injected)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d on %s: rendered file differs from the render of the final state 60s after the last write (faults %v)\n"+
				"replay: go test ./runner -run 'TestFaultTrials/%s' -fault.seed=%d\nwant:\n%s\ngot:\n%s",
				seed, e.name, injected, e.name, seed, want.String(), got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// retry runs op until it succeeds: the store may be down or frozen.
func retry(t *testing.T, seed int64, op func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: store operation failing for 60s: %v", seed, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
