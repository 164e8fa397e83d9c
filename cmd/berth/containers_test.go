package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
	"github.com/berthd/berth/runtime/embedded/image"
)

// berthCLI runs berth in-process and returns its exit code and output.
func berthCLI(ctx context.Context, args ...string) (int, string, string) {
	return berthCLIStdin(ctx, "", args...)
}

// berthCLIStdin is berthCLI with stdin.
func berthCLIStdin(ctx context.Context, stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := execute(ctx, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// startDaemon runs `berth up` in-process on a private bridge, subnet,
// cgroup parent and state dir; cleanup removes every container, stops
// the daemon and checks nothing is left on the host.
func startDaemon(t *testing.T) (sock string) {
	t.Helper()
	return startDaemonWith(t)
}

// daemonWithBusybox is startDaemon with a busybox image imported as bb:1;
// h is the --host flag for it.
func daemonWithBusybox(t *testing.T) (sock, h string) {
	t.Helper()
	sock = startDaemon(t)
	h = "--host=" + sock
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := embeddedtest.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := berthCLI(t.Context(), "import", h, rootfs, "bb:1"); code != 0 {
		t.Fatal(stderr)
	}
	return sock, h
}

// startDaemonWith is startDaemon with more flags for berth up.
func startDaemonWith(t *testing.T, extra ...string) (sock string) {
	t.Helper()
	env := embeddedtest.NewEnv(t)
	sock = filepath.Join(t.TempDir(), "berth.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		code, _, stderr := berthCLI(ctx, append([]string{"up", "--state-dir", env.StateDir, "--socket", sock, "--bridge", env.Bridge,
			"--subnet", env.Subnet.String(), "--cgroup-parent", env.CgroupParent, "--log-level", "warn"}, extra...)...)
		if code != 0 {
			t.Errorf("berth up: exit %d: %s", code, stderr)
		}
		done <- code
	}()
	t.Cleanup(func() {
		c := api.NewClient(sock)
		cs, _ := c.List(context.Background())
		for _, ctr := range cs {
			if err := c.Remove(context.Background(), ctr.ID, runtime.Force()); err != nil {
				t.Errorf("cleanup: rm %s: %v", ctr.Name, err)
			}
		}
		cancel()
		<-done
		if err := embeddedtest.RemoveBridge(env); err != nil {
			t.Errorf("remove bridge: %v", err)
		}
		embeddedtest.AssertClean(t, env)
	})
	deadline := time.Now().Add(20 * time.Second)
	for api.NewClient(sock).Ping(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("berth up never answered on its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return sock
}

func TestContainerCommands(t *testing.T) {
	sock := startDaemon(t)
	h := "--host=" + sock
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := embeddedtest.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("vol\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string // exact unless empty
		stdoutIn string
		stderrIn string
	}{
		{"import", []string{"import", h, rootfs, "bb:1"}, 0, "", "sha256:", ""},
		{"images", []string{"images", h}, 0, "", "bb           1", ""},
		{"images --format", []string{"images", h, "--format", "{{.Repository}}:{{.Tag}}"}, 0, "bb:1\n", "", ""},
		{"run foreground", []string{"run", h, "--name", "fg", "-e", "A=b", "bb:1", "sh", "-c", "echo $A; exit 3"}, 3, "b\n", "", ""},
		{"run volume read-only", []string{"run", h, "--rm", "-v", vol + ":/v:ro", "bb:1", "sh", "-c", "cat /v/f; touch /v/g || true"}, 0, "vol\n", "", "Read-only file system"},
		{"command not found", []string{"run", h, "bb:1", "nope"}, 127, "", "", `exec: "nope": executable file not found in $PATH`},
		{"unknown image", []string{"run", h, "nope:1", "true"}, 1, "", "", `unable to find image "nope:1"`},
		{"invalid memory", []string{"run", h, "-m", "lots", "bb:1", "true"}, 2, "", "", `invalid memory value "lots"`},
		{"bad publish", []string{"run", h, "-p", "80", "bb:1", "true"}, 2, "", "", `-p "80"`},
		{"name in use", []string{"run", h, "--name", "fg", "bb:1", "true"}, 1, "", "", `name "fg" is already in use`},
		{"run detached", []string{"run", h, "-d", "--name", "bg", "-l", "app=x", "bb:1", "sh", "-c", "echo up; sleep 1000"}, 0, "", "", ""},
		{"run -d --rm: removed when it exits", []string{"run", h, "-d", "--rm", "--name", "gone", "bb:1", "sh", "-c", "echo bye"}, 0, "", "", ""},
		{"run -d --rm: removed when stopped", []string{"run", h, "-d", "--rm", "--name", "stopme", "bb:1", "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}, 0, "", "", ""},
		{"stop an --rm container", []string{"stop", h, "stopme"}, 0, "stopme\n", "", ""},
		{"run --rm with a restart policy", []string{"run", h, "-d", "--rm", "--restart", "always", "bb:1", "true"}, 2, "", "", "conflicting options: --restart always and --rm"},
		{"ps", []string{"ps", h}, 0, "", "   bg\n", ""},
		{"ps -a", []string{"ps", h, "-a"}, 0, "", "Exited (3)", ""},
		{"ps label filter", []string{"ps", h, "-a", "-q", "--filter", "label=app=y"}, 0, "", "", ""},
		{"ps --format", []string{"ps", h, "-a", "--format", `{{.Names}} {{.State}} {{.Label "app"}}`, "--filter", "name=bg"}, 0, "bg running x\n", "", ""},
		{"ps --format table", []string{"ps", h, "--format", "table {{.Names}}\t{{.Image}}"}, 0, "NAMES   IMAGE\nbg      bb:1\n", "", ""},
		{"ps --format json", []string{"ps", h, "--format", "json"}, 0, "", `"Names":"bg","Networks":"bridge"`, ""},
		{"ps status filter sees stopped", []string{"ps", h, "--format", "{{.Names}}", "--filter", "status=exited"}, 0, "fg\n", "", ""},
		{"ps name filters are ORed", []string{"ps", h, "-a", "--format", "{{.Names}}", "--filter", "name=fg", "--filter", "name=bg"}, 0, "", "fg", ""},
		{"ps ancestor filter", []string{"ps", h, "-a", "-q", "--filter", "ancestor=bb:2"}, 0, "", "", ""},
		{"ps ancestor repo", []string{"ps", h, "--format", "{{.Names}}", "--filter", "ancestor=bb"}, 0, "bg\n", "", ""},
		{"ps --no-trunc", []string{"ps", h, "--no-trunc", "--format", "{{.Command}}"}, 0, "\"sh -c echo up; sleep 1000\"\n", "", ""},
		{"ps unknown filter", []string{"ps", h, "--filter", "volume=x"}, 2, "", "", "filters on id, name, label, status and ancestor"},
		{"ps bad template", []string{"ps", h, "--format", "{{.Nope"}, 2, "", "", "--format"},
		{"inspect unknown: the message once", []string{"inspect", h, "nosuch"}, 1, "", "", "berth: no such container: nosuch\n"},
		{"inspect --format", []string{"inspect", h, "--format", "{{.Name}} {{index .Labels \"app\"}}", "bg"}, 0, "bg x\n", "", ""},
		{"exec", []string{"exec", h, "bg", "sh", "-c", "echo in; exit 4"}, 4, "in\n", "", ""},
		{"exec missing", []string{"exec", h, "bg", "nope"}, 127, "", "", "executable file not found"},
		{"exec -i", []string{"exec", h, "-i", "bg", "sh", "-c", "cat; echo done"}, 0, "from stdin\ndone\n", "", ""},
		{"exec without -i", []string{"exec", h, "bg", "sh", "-c", "cat; echo done"}, 0, "done\n", "", ""},
		{"exec -t", []string{"exec", h, "-t", "bg", "sh", "-c", "tty; exit 6"}, 6, "", "/dev/pts/", ""},
		{"exec -it", []string{"exec", h, "-it", "bg", "sh", "-c", "read x; echo got $x"}, 0, "", "got from stdin\r\n", ""},
		{"logs", []string{"logs", h, "--tail", "1", "fg"}, 0, "b\n", "", ""},
		{"rm running", []string{"rm", h, "bg"}, 1, "", "", "cannot remove running container"},
		{"rmi in use", []string{"rmi", h, "bb:1"}, 1, "", "", "in use"},
		{"kill", []string{"kill", h, "bg"}, 0, "bg\n", "", ""},
		{"rm", []string{"rm", h, "bg", "fg"}, 0, "bg\nfg\n", "", ""},
		{"rmi", []string{"rmi", h, "bb:1"}, 0, "", "Deleted: sha256:", ""},
		{"no daemon", []string{"ps", "--host", filepath.Join(t.TempDir(), "none.sock")}, 1, "", "", "berth daemon at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := berthCLIStdin(ctx, "from stdin\n", tc.args...)
			if code != tc.code || tc.stdout != "" && stdout != tc.stdout || !strings.Contains(stdout, tc.stdoutIn) || !strings.Contains(stderr, tc.stderrIn) {
				t.Errorf("berth %s: exit %d stdout %q stderr %q; want exit %d stdout %q (containing %q) stderr containing %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stdout, tc.stdoutIn, tc.stderrIn)
			}
			if tc.name == "run detached" {
				waitForLog(t, sock, "bg", "up\n")
			}
			if tc.name == "kill" {
				waitForExit(t, sock, "bg")
			}
			if strings.HasPrefix(tc.name, "run -d --rm: removed when it exits") {
				waitForRemoval(t, sock, "gone")
			}
			if tc.name == "stop an --rm container" {
				waitForRemoval(t, sock, "stopme")
			}
		})
	}
	code, stdout, _ := berthCLI(ctx, "ps", h, "-a", "-q")
	if code != 0 || stdout != "" {
		t.Errorf("containers left: %q", stdout)
	}
}

func TestInspectJSON(t *testing.T) {
	_, h := daemonWithBusybox(t)
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	if code, _, stderr := berthCLI(ctx, "run", h, "-d", "--name", "j", "-p", taken+":80", "bb:1", "true"); code != 1 || !strings.Contains(stderr, "address already in use") {
		t.Errorf("publishing a taken port: exit %d %s", code, stderr)
	}
	if code, _, stderr := berthCLI(ctx, "run", h, "-d", "--name", "j", "--hostname", "jj", "--restart", "on-failure:2", "bb:1", "sleep", "1000"); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, stderr := berthCLI(ctx, "inspect", h, "j")
	var got []runtime.Container
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || len(got) != 1 {
		t.Fatalf("inspect: %d %q %s", code, stdout, stderr)
	}
	c := got[0]
	if c.Name != "j" || c.Hostname != "jj" || c.State != runtime.StateRunning || c.IP == "" || c.Restart.Name != "on-failure" || c.Restart.MaxRetries != 2 {
		t.Errorf("inspect: %+v", c)
	}
}

func waitForLog(t *testing.T, sock, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, stdout, _ := berthCLI(context.Background(), "logs", "--host="+sock, id)
		if code == 0 && stdout == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of %s: %q, want %q", id, stdout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForRemoval waits until the container is gone (run --rm).
func waitForRemoval(t *testing.T, sock, id string) {
	t.Helper()
	c := api.NewClient(sock)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := c.Inspect(context.Background(), id)
		if errors.Is(err, runtime.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still there (%s, %v), want it removed", id, got.State, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLeftOutShown: berth ps and inspect show what the registrar left out
// of a container's records and why, read from the daemon's store.
func TestLeftOutShown(t *testing.T) {
	_, h := daemonWithBusybox(t)
	ctx := t.Context()
	if code, _, stderr := berthCLI(ctx, "run", h, "-d", "--name", "half", "-e", "VIRTUAL_HOST=ok.localhost,bad;host", "bb:1", "sleep", "1000"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := berthCLI(ctx, "run", h, "-d", "--name", "clean", "-e", "VIRTUAL_HOST=clean.localhost", "bb:1", "sleep", "1000"); code != 0 {
		t.Fatal(stderr)
	}
	var stdout, stderr string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var code int
		code, stdout, stderr = berthCLI(ctx, "ps", h)
		if code == 0 && strings.Contains(stderr, "VIRTUAL_HOST") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth ps never named the left-out VIRTUAL_HOST: exit %d stdout %q stderr %q", code, stdout, stderr)
		}
	}
	want := `berth: half: VIRTUAL_HOST="bad;host" is left out of its records: `
	if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 || !strings.Contains(stdout, "half") {
		t.Errorf("berth ps: stdout %q stderr %q; want stderr one line starting %q", stdout, stderr, want)
	}
	if code, out, errs := berthCLI(ctx, "ps", h, "--format", "{{.Names}}: {{.Invalid}}", "--filter", "name=half"); code != 0 || !strings.HasPrefix(out, `half: VIRTUAL_HOST="bad;host": `) {
		t.Errorf("ps --format {{.Invalid}}: exit %d %q %s", code, out, errs)
	}
	code, out, errs := berthCLI(ctx, "inspect", h, "half", "clean")
	var got []struct {
		Name    string               `json:"name"`
		Invalid []records.FieldError `json:"invalid"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 {
		t.Fatalf("inspect: exit %d %q %s", code, out, errs)
	}
	if len(got[0].Invalid) != 1 || got[0].Invalid[0].Field != "VIRTUAL_HOST" || got[0].Invalid[0].Value != "bad;host" || got[0].Invalid[0].Reason == "" || len(got[1].Invalid) != 0 {
		t.Errorf("inspect: %+v", got)
	}
}

// TestRunRmInterrupted: an interrupted foreground run --rm stops and
// removes its container, as docker's signal proxy and --rm do; without
// --rm the container keeps running.
func TestRunRmInterrupted(t *testing.T) {
	sock, h := daemonWithBusybox(t)
	loop := "echo up; trap 'exit 0' TERM; while true; do sleep 0.1; done"
	for _, rm := range []bool{true, false} {
		name := fmt.Sprintf("fg-rm-%v", rm)
		args := []string{"run", h, "--name", name, "bb:1", "sh", "-c", loop}
		if rm {
			args = append(args[:2:2], append([]string{"--rm"}, args[2:]...)...)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var stdout, stderr testenv.SyncBuffer
		done := make(chan int, 1)
		go func() { done <- execute(ctx, args, strings.NewReader(""), &stdout, &stderr) }()
		for deadline := time.Now().Add(20 * time.Second); stdout.String() != "up\n"; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: output %q %q", name, stdout.String(), stderr.String())
			}
		}
		cancel() // what a Ctrl-C does to berth run
		if code := <-done; code != 0 {
			t.Errorf("%s: exit %d after the interrupt: %s", name, code, stderr.String())
		}
		if rm {
			waitForRemoval(t, sock, name)
		} else if got, err := api.NewClient(sock).Inspect(t.Context(), name); err != nil || !got.Running() {
			t.Errorf("%s after the interrupt: %s %v, want running", name, got.State, err)
		}
	}
}

func waitForExit(t *testing.T, sock, id string) {
	t.Helper()
	if _, err := waitExited(context.Background(), api.NewClient(sock), id); err != nil {
		t.Fatal(err)
	}
}

// TestPullAndLoad pushes a busybox image to go-containerregistry's
// in-process registry, pulls it with berth pull, saves it as a docker
// save tarball and loads that with berth load.
func TestPullAndLoad(t *testing.T) {
	sock := startDaemon(t)
	h := "--host=" + sock
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := embeddedtest.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	var layerTar bytes.Buffer
	if err := image.WriteDirTar(&layerTar, rootfs); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Cmd: []string{"echo", "from the registry"}, Env: []string{"PATH=/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/bb:1"
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(t.TempDir(), "saved.tar")
	savedTag, _ := name.NewTag("saved:1")
	if err := tarball.WriteToFile(saved, savedTag, img); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(t.TempDir(), "corrupt.tar")
	if err := os.WriteFile(corrupt, []byte("not a tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name     string
		args     []string
		code     int
		stdoutIn string
		stderrIn string
	}{
		{"pull", []string{"pull", h, ref}, 0, "layer 1/1", ""},
		{"pull again is cached", []string{"pull", h, ref}, 0, "already present", ""},
		{"run pulled", []string{"run", h, "--rm", ref}, 0, "from the registry\n", ""},
		{"pull unknown", []string{"pull", h, strings.TrimPrefix(srv.URL, "http://") + "/test/none:1"}, 1, "", "pull"},
		{"pull bad reference", []string{"pull", h, "Not::A/Ref"}, 2, "", "bad image reference"},
		{"pull unreachable registry suggests load", []string{"pull", h, "127.0.0.1:1/test/bb:1"}, 1, "", "docker save IMAGE | berth load"},
		{"load", []string{"load", h, "-i", saved}, 0, "Loaded image: saved:1", ""},
		{"run loaded", []string{"run", h, "--rm", "saved:1"}, 0, "from the registry\n", ""},
		{"load corrupt", []string{"load", h, "-i", corrupt}, 1, "", "not a docker save or OCI layout tarball"},
		{"rmi", []string{"rmi", h, "saved:1", ref}, 0, "Untagged: saved:1", ""},
		// stdin reaches the daemon only as a stream
		{"load from stdin", []string{"load", h}, 0, "Loaded image: saved:1", ""},
		{"import from stdin", []string{"import", h, "-", "piped:1"}, 0, "sha256:", ""},
		{"run imported", []string{"run", h, "--rm", "piped:1", "echo", "ok"}, 0, "ok\n", ""},
		{"load corrupt from stdin", []string{"load", h}, 1, "", "load tarball: not a docker save or OCI layout tarball"},
		{"rmi loaded and imported", []string{"rmi", h, "saved:1", "piped:1"}, 0, "Untagged: piped:1", ""},
		{"images empty", []string{"images", h, "-q"}, 0, "", ""},
	}
	savedTar, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	stdin := map[string]string{"load from stdin": string(savedTar), "import from stdin": layerTar.String(), "load corrupt from stdin": "not a tarball"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := berthCLIStdin(ctx, stdin[tc.name], tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdoutIn) || !strings.Contains(stderr, tc.stderrIn) {
				t.Errorf("berth %s: exit %d stdout %q stderr %q; want exit %d, stdout containing %q, stderr containing %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stdoutIn, tc.stderrIn)
			}
		})
	}
}

// TestDaemonCrash builds berth, runs `berth up` as a process, starts a
// container, SIGKILLs the daemon, and checks that the container keeps
// serving, that a new daemon re-attaches to it, and that it can then be
// stopped and removed.
func TestDaemonCrash(t *testing.T) {
	// berth and its companion container init, side by side as make build
	// puts them (the daemon finds berth-init there).
	bin := filepath.Join(t.TempDir(), "berth")
	for _, b := range [][]string{{bin, "."}, {filepath.Join(filepath.Dir(bin), "berth-init"), "../../runtime/embedded/containerinit/cmd/berth-init"}} {
		build := exec.Command("go", "build", "-tags", "seccomp", "-o", b[0], b[1])
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	env := embeddedtest.NewEnv(t)
	sock := filepath.Join(t.TempDir(), "berth.sock")
	h := "--host=" + sock
	up := func() *exec.Cmd {
		cmd := exec.Command(bin, "up", "--state-dir", env.StateDir, "--socket", sock, "--bridge", env.Bridge,
			"--subnet", env.Subnet.String(), "--cgroup-parent", env.CgroupParent)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for api.NewClient(sock).Ping(context.Background()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("berth up never answered")
			}
			time.Sleep(20 * time.Millisecond)
		}
		return cmd
	}
	daemon := up()
	if !holdsMemfd(t, daemon.Process.Pid, "berth-init") {
		t.Error("the daemon holds no berth-init memfd: containers' init is not handed over to the companion")
	}
	t.Cleanup(func() {
		c := api.NewClient(sock)
		cs, _ := c.List(context.Background())
		for _, ctr := range cs {
			_ = c.Remove(context.Background(), ctr.ID, runtime.Force())
		}
		_ = daemon.Process.Signal(os.Interrupt)
		_ = daemon.Wait()
		_ = embeddedtest.RemoveBridge(env)
		embeddedtest.AssertClean(t, env)
	})
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := embeddedtest.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "index.html"), []byte("served\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if code, _, stderr := berthCLI(ctx, "import", h, rootfs, "bb:1"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := berthCLI(ctx, "run", h, "-d", "--name", "web", "bb:1", "httpd", "-f", "-p", "8080", "-h", "/"); code != 0 {
		t.Fatal(stderr)
	}
	web, err := api.NewClient(sock).Inspect(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	get := func() string {
		t.Helper()
		return embeddedtest.HTTPGet(t, "http://"+web.IP+":8080/index.html")
	}
	if got := get(); got != "served\n" {
		t.Fatalf("GET before the crash: %q", got)
	}
	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = daemon.Wait()
	if got := get(); got != "served\n" {
		t.Errorf("GET with the daemon dead: %q", got)
	}
	daemon = up()
	code, stdout, _ := berthCLI(ctx, "ps", h)
	if code != 0 || !strings.Contains(stdout, "Up ") || !strings.Contains(stdout, "web") {
		t.Errorf("ps after re-attach: %q", stdout)
	}
	if got := get(); got != "served\n" {
		t.Errorf("GET after re-attach: %q", got)
	}
	if code, _, stderr := berthCLI(ctx, "stop", h, "-t", "1", "web"); code != 0 {
		t.Errorf("stop: %s", stderr)
	}
	if code, _, stderr := berthCLI(ctx, "rm", h, "web"); code != 0 {
		t.Errorf("rm: %s", stderr)
	}
}

// holdsMemfd tells whether process pid has a memfd called name open.
func holdsMemfd(t *testing.T, pid int, name string) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); l == "/memfd:"+name+" (deleted)" {
			return true
		}
	}
	return false
}
