package dockercompat_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os/exec"
	"regexp"
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

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime/embedded/image"
)

// pushBusybox pushes the busybox fixture as ref to an in-process registry
// on loopback and returns the registry's host:port.
func pushBusybox(t *testing.T, repoTag string) string {
	t.Helper()
	var layerTar bytes.Buffer
	if err := image.WriteDirTar(&layerTar, fx.Busybox); err != nil {
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
	if img, err = mutate.Config(img, v1.Config{Cmd: []string{"echo", "from the registry"}, Env: []string{"PATH=/bin"}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	tag, err := name.NewTag(host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	return host
}

// TestDockerCLIMore: the docker CLI flows beyond issue #8's list, on
// berth: run without -d (attach) with --rm and exit codes, a failed
// start, exec with and without stdin, health, kill/start/restart/wait,
// logs --tail/-t, live events, networks, images, pull from a registry,
// rmi, a pinned API version above the maximum.
func TestDockerCLIMore(t *testing.T) {
	d := startDaemon(t)
	cli := func(args ...string) cliResult { t.Helper(); return docker(t, d.host, args...) }
	want := func(r cliResult, code int, stdout string) {
		t.Helper()
		if r.code != code || stdout != "*" && r.stdout != stdout {
			t.Errorf("docker %s: exit %d stdout %q stderr %q; want exit %d stdout %q", strings.Join(r.args, " "), r.code, r.stdout, r.stderr, code, stdout)
		}
	}
	loop := "trap 'exit 0' TERM; while true; do sleep 0.1; done"

	// Live events from the start.
	ectx, ecancel := context.WithCancel(context.Background())
	defer ecancel()
	events := exec.CommandContext(ectx, "docker", "events", "--filter", "container=s1", "--format", "{{.Action}}")
	events.Env = dockerEnv(t, d.host)
	var evOut testenv.SyncBuffer
	events.Stdout = &evOut
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ecancel(); _ = events.Wait() }()

	// docker run without -d: attach, wait, start; --rm removes it.
	r := cli("run", "--rm", "--name", "r1", "busybox:test", "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if r.code != 3 || r.stdout != "hello\n" || r.stderr != "oops\n" {
		t.Errorf("run --rm: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	waitFor(t, 10*time.Second, "r1 to be removed", func() bool { return cli("ps", "-aq", "--filter", "name=r1").stdout == "" })
	// run -d --rm: the runtime removes it once stopped (Spec.AutoRemove).
	want(cli("run", "-d", "--rm", "--name", "d1", "busybox:test", "sh", "-c", loop), 0, "*")
	want(cli("inspect", "-f", "{{.HostConfig.AutoRemove}}", "d1"), 0, "true\n")
	want(cli("stop", "d1"), 0, "d1\n")
	waitFor(t, 10*time.Second, "d1 to be removed", func() bool { return cli("ps", "-aq", "--filter", "name=d1").stdout == "" })
	r = cli("run", "--name", "r2", "busybox:test", "nosuchcmd")
	if r.code != 127 || !strings.Contains(r.stderr, "executable file not found") {
		t.Errorf("run of a missing command: exit %d %q", r.code, r.stderr)
	}

	// -t: no real TTY, but the streams are unframed as the CLI expects.
	r = cli("run", "--rm", "-t", "busybox:test", "echo", "tty")
	if r.code != 0 || r.stdout != "tty\n" || !strings.Contains(r.stderr, "WARNING: berth runs containers without a TTY") {
		t.Errorf("run -t: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	want(cli("run", "-d", "-t", "--name", "t1", "busybox:test", "sh", "-c", "echo x; exec sleep 100"), 0, "*")
	waitFor(t, 10*time.Second, "t1's output through logs (unframed)", func() bool { return cli("logs", "t1").stdout == "x\n" })
	want(cli("inspect", "-f", "{{.Config.Tty}}", "t1"), 0, "true\n")
	want(cli("rm", "-f", "t1"), 0, "t1\n")

	want(cli("run", "-d", "--name", "s1", "--health-cmd", "true", "--health-interval", "200ms", "busybox:test", "sh", "-c", loop), 0, "*")
	want(cli("exec", "s1", "sh", "-c", "echo in; echo err >&2; exit 4"), 4, "in\n")
	piped := exec.Command("docker", "exec", "-i", "s1", "sh", "-c", "tr a-z A-Z")
	piped.Env = dockerEnv(t, d.host)
	piped.Stdin = strings.NewReader("piped\n")
	if out, err := piped.Output(); err != nil || string(out) != "PIPED\n" {
		t.Errorf("exec -i: %q %v", out, err)
	}
	waitFor(t, 15*time.Second, "s1 to be healthy", func() bool {
		return cli("ps", "--filter", "health=healthy", "--format", "{{.Names}} {{.Status}}").stdout != ""
	})
	if st := cli("ps", "--filter", "name=s1", "--format", "{{.Status}}").stdout; !regexp.MustCompile(`^Up .* \(healthy\)\n$`).MatchString(st) {
		t.Errorf("status %q", st)
	}
	want(cli("kill", "s1"), 0, "s1\n")
	want(cli("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "s1"), 0, "exited 137\n")
	want(cli("start", "s1"), 0, "s1\n")
	want(cli("restart", "-t", "1", "s1"), 0, "s1\n")
	want(cli("stop", "-t", "5", "s1"), 0, "s1\n")
	want(cli("wait", "s1"), 0, "0\n")
	want(cli("kill", "s1"), 1, "")
	waitFor(t, 10*time.Second, "the live events", func() bool {
		return strings.Contains(evOut.String(), "stop\n")
	})
	if ev := evOut.String(); !strings.HasPrefix(ev, "create\nstart\nhealth_status: healthy\nkill\ndie\nstart\n") {
		t.Errorf("live events of s1:\n%s", ev)
	}

	want(cli("run", "-d", "--name", "l1", "busybox:test", "sh", "-c", "for i in 1 2 3; do echo line $i; done; exec sleep 100"), 0, "*")
	waitFor(t, 10*time.Second, "l1's output", func() bool { return cli("logs", "l1").stdout == "line 1\nline 2\nline 3\n" })
	want(cli("logs", "--tail", "2", "l1"), 0, "line 2\nline 3\n")
	if out := cli("logs", "-t", "l1").stdout; !regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line \d\n){3}$`).MatchString(out) {
		t.Errorf("logs -t: %q", out)
	}
	want(cli("ps", "-l", "--format", "{{.Names}}"), 0, "l1\n")
	want(cli("ps", "-a", "--format", "{{.Names}}"), 0, "l1\ns1\nr2\n") // newest first

	subnet := d.rt.Network().Subnet().String()
	want(cli("network", "ls", "--format", "{{.Name}} {{.Driver}}"), 0, "bridge bridge\nhost host\nnone null\n")
	want(cli("network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Subnet}}"), 0, subnet+"\n")

	host := pushBusybox(t, "test/bb:1")
	ref := host + "/test/bb:1"
	r = cli("pull", ref)
	if r.code != 0 || !strings.Contains(r.stdout, "Status: Downloaded newer image for "+ref) {
		t.Errorf("pull: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = cli("pull", host+"/test/nosuch:1")
	if r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("pull of a missing image: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	want(cli("run", "--rm", ref), 0, "from the registry\n")
	want(cli("images", "--format", "{{.Repository}}:{{.Tag}}"), 0, ref+"\nbusybox:test\n")
	want(cli("image", "inspect", "-f", "{{.Os}} {{.Config.Cmd}}", ref), 0, "linux [echo from the registry]\n")
	r = cli("rmi", ref)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Untagged: "+ref+"\nDeleted: sha256:") {
		t.Errorf("rmi: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	want(cli("rm", "-f", "s1", "l1", "r2"), 0, "s1\nl1\nr2\n")

	pinned := exec.Command("docker", "version")
	pinned.Env = append(dockerEnv(t, d.host), "DOCKER_API_VERSION=1.52")
	out, err := pinned.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "client version 1.52 is too new. Maximum supported API version is 1.51") {
		t.Errorf("DOCKER_API_VERSION=1.52: %v %s", err, out)
	}
}
