package bench

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
)

// DockerGenConfig says what berth bench dockergen measures.
type DockerGenConfig struct {
	// Tools are docker-gen command lines before their flags, measured side
	// by side on the same starts: {"/usr/bin/berth", "docker-gen"}, and
	// optionally {"/usr/local/bin/docker-gen"}. Names label them.
	Tools   [][]string
	Names   []string
	Wait    string        // -wait, e.g. "500ms:2s"
	Starts  int           // containers started one at a time
	Gap     time.Duration // pause after a start is in every file, before the next
	Running int           // containers started (in parallel) before the measured starts
	// Template is the docker-gen template rendered; "" is a small
	// nginx-proxy style one (one line per VIRTUAL_HOST).
	Template string
	Dir      string // scratch space
}

// DockerGenResult is the JSON of berth bench dockergen; its field names
// are part of berth's interface.
type DockerGenResult struct {
	Wait    string          `json:"wait"`
	Starts  int             `json:"starts"`
	Running int             `json:"running"` // containers running before the measured starts
	GapMs   float64         `json:"gap_ms"`
	Tools   []DockerGenTool `json:"tools"`
}

// DockerGenTool is one docker-gen implementation's figures.
type DockerGenTool struct {
	Name string `json:"name"`
	// P50Ms, P90Ms and MaxMs are from a start returning until the
	// container's host name is in the tool's file.
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	MaxMs float64 `json:"max_ms"`
	// Renders counts the tool's -notify runs during the measured starts
	// (one per render that changed its file).
	Renders int `json:"renders"`
	// PeakRSSMB is the tool's peak resident set (VmHWM) at the end, with
	// Running+Starts containers followed.
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

// benchDockerGenTemplate lists each container's VIRTUAL_HOST, as an
// nginx-proxy template's server_name lines do.
const benchDockerGenTemplate = `{{ range $host, $containers := groupByMulti $ "Env.VIRTUAL_HOST" "," }}
server_name {{ $host }}; # {{ range $containers }}{{ .Name }} {{ end }}
{{ end }}`

// DockerGen measures docker-gen mode against the Docker Engine DOCKER_HOST
// names: each tool runs as its own process with -watch -wait cfg.Wait
// -only-exposed, filtered to the benchmark's containers; cfg.Starts
// containers are then started one at a time, each once the previous one is
// in every tool's file and cfg.Gap has passed. The image (busybox from
// busybox-static, imported), network and containers it creates are
// removed when it returns.
func DockerGen(ctx context.Context, cfg DockerGenConfig, log *slog.Logger) (res DockerGenResult, err error) {
	res = DockerGenResult{Wait: cfg.Wait, Starts: cfg.Starts, Running: cfg.Running, GapMs: ms(cfg.Gap)}
	if len(cfg.Tools) == 0 || len(cfg.Tools) != len(cfg.Names) || cfg.Starts < 1 {
		return res, errors.New("bench dockergen: want at least one tool, one name per tool and one start")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	label := "berth.bench=" + suffix
	rt, err := docker.New(ctx, docker.Config{Logger: log})
	if err != nil {
		return res, err
	}
	defer rt.Close()
	image := "berth-bench-dockergen:" + suffix
	if err := importBusybox(ctx, image, label); err != nil {
		return res, err
	}
	network := "berth-bench-" + suffix
	if out, err := exec.CommandContext(ctx, "docker", "network", "create", "--label", label, network).CombinedOutput(); err != nil {
		exec.CommandContext(ctx, "docker", "rmi", "-f", image).Run()
		return res, fmt.Errorf("docker network create: %v: %s", err, out)
	}
	defer func() {
		// Containers first (they hold endpoints on the network), then the
		// network and the image; bounded, so an engine that stopped
		// answering does not hold the benchmark.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if cs, err := rt.List(cctx); err == nil {
			var ids []string
			for _, c := range cs {
				if c.Labels["berth.bench"] == suffix {
					ids = append(ids, c.ID)
				}
			}
			removeParallel(cctx, rt, ids)
		}
		exec.CommandContext(cctx, "docker", "network", "rm", network).Run()
		exec.CommandContext(cctx, "docker", "rmi", "-f", image).Run()
	}()
	spec := func(name string) runtime.Spec {
		return runtime.Spec{Name: name, Image: image, Network: network, Labels: map[string]string{"berth.bench": suffix},
			Env: []string{"VIRTUAL_HOST=" + name + ".localhost"}}
	}
	if err := startParallel(ctx, rt, cfg.Running, func(i int) runtime.Spec { return spec(fmt.Sprintf("bg%d-%s", i, suffix)) }); err != nil {
		return res, err
	}

	tmpl := filepath.Join(cfg.Dir, "dockergen.tmpl")
	if cfg.Template != "" {
		tmpl = cfg.Template
	} else if err := os.WriteFile(tmpl, []byte(benchDockerGenTemplate), 0o644); err != nil {
		return res, err
	}
	tools := make([]*dockerGenProc, len(cfg.Tools))
	defer func() {
		for _, t := range tools {
			if t != nil {
				t.stop()
			}
		}
	}()
	for i, argv := range cfg.Tools {
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("tool%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, err
		}
		t := &dockerGenProc{name: cfg.Names[i], dest: filepath.Join(dir, "out"), count: filepath.Join(dir, "renders")}
		args := append(argv[1:len(argv):len(argv)], "-watch", "-wait", cfg.Wait, "-only-exposed",
			"-notify", "echo >> "+t.count, "-container-filter", "label="+label, tmpl, t.dest)
		if err := t.start(argv[0], args, filepath.Join(dir, "log")); err != nil {
			return res, fmt.Errorf("%s: %w", t.name, err)
		}
		tools[i] = t
	}
	if cfg.Running > 0 {
		last := fmt.Sprintf("bg%d-%s.localhost", cfg.Running-1, suffix)
		for _, t := range tools {
			if _, err := t.waitFor(ctx, time.Now(), last, 2*time.Minute); err != nil {
				return res, fmt.Errorf("%s: first render: %w", t.name, err)
			}
		}
	}
	// Let the first render and its trailing events settle.
	time.Sleep(2 * time.Second)
	before := make([]int, len(tools))
	for i, t := range tools {
		before[i] = t.renders()
	}
	lat := make([][]time.Duration, len(tools))
	for i := range cfg.Starts {
		name := fmt.Sprintf("s%d-%s", i, suffix)
		if _, err := rt.Run(ctx, spec(name)); err != nil {
			return res, err
		}
		started := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, len(tools))
		for j, t := range tools {
			wg.Go(func() {
				var d time.Duration
				d, errs[j] = t.waitFor(ctx, started, name+".localhost", time.Minute)
				lat[j] = append(lat[j], d)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return res, err
		}
		time.Sleep(cfg.Gap)
	}
	time.Sleep(time.Second) // renders still due (a max window) are counted
	for i, t := range tools {
		res.Tools = append(res.Tools, DockerGenTool{
			Name:  t.name,
			P50Ms: ms(percentile(lat[i], 50)), P90Ms: ms(percentile(lat[i], 90)), MaxMs: ms(percentile(lat[i], 100)),
			Renders: t.renders() - before[i], PeakRSSMB: peakRSSMB(t.cmd.Process.Pid),
		})
	}
	return res, nil
}

// dockerGenProc is one docker-gen process under measurement.
type dockerGenProc struct {
	name, dest, count string
	cmd               *exec.Cmd
	logf              *os.File
	done              chan error
}

func (t *dockerGenProc) start(bin string, args []string, logPath string) error {
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	t.logf = f
	t.cmd = exec.Command(bin, args...)
	t.cmd.Stdout, t.cmd.Stderr = f, f
	if err := t.cmd.Start(); err != nil {
		f.Close()
		return err
	}
	t.done = make(chan error, 1)
	go func() { t.done <- t.cmd.Wait() }()
	return nil
}

// stop ends the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (t *dockerGenProc) stop() {
	t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
		t.cmd.Process.Kill()
		<-t.done
	}
	t.logf.Close()
}

// waitFor polls the tool's file until it names host, and returns how long
// after since that was.
func (t *dockerGenProc) waitFor(ctx context.Context, since time.Time, host string, limit time.Duration) (time.Duration, error) {
	if err := waitFor(ctx, limit, func() bool {
		b, _ := os.ReadFile(t.dest)
		return bytes.Contains(b, []byte(host))
	}); err != nil {
		select {
		case err := <-t.done:
			t.done <- err
			return 0, fmt.Errorf("%s exited (%v) before rendering %s; see %s", t.name, err, host, t.logf.Name())
		default:
		}
		return 0, fmt.Errorf("%s did not render %s: %w", t.name, host, err)
	}
	return time.Since(since), nil
}

// renders is how many times the tool ran its -notify command.
func (t *dockerGenProc) renders() int {
	b, _ := os.ReadFile(t.count)
	return bytes.Count(b, []byte("\n"))
}

// peakRSSMB reads a process's VmHWM (0 when unavailable).
func peakRSSMB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// startParallel starts n containers, eight at a time.
func startParallel(ctx context.Context, rt *docker.Runtime, n int, spec func(int) runtime.Spec) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := rt.Run(ctx, spec(i)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// removeParallel removes containers, four at a time.
func removeParallel(ctx context.Context, rt *docker.Runtime, ids []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_ = rt.Remove(ctx, id, runtime.Force())
		})
	}
	wg.Wait()
}

// importBusybox imports an image holding busybox-static that sleeps,
// exposing port 80 (so -only-exposed keeps its containers), labelled.
func importBusybox(ctx context.Context, image, label string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is not installed: %w", err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "tmp/", "proc/", "sys/", "dev/", "etc/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "docker", "import",
		"-c", "EXPOSE 80", "-c", "LABEL "+label, "-c", `CMD ["/bin/busybox", "sleep", "86400"]`, "-", image)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import: %v: %s", err, out)
	}
	return nil
}
