package dockercompat_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockerclient "github.com/fsouza/go-dockerclient"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

func mobyClient(t *testing.T, d *daemon, opts ...client.Opt) *client.Client {
	t.Helper()
	c, err := client.New(append([]client.Opt{client.WithHost(d.host), client.WithAPIVersionNegotiation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recvEvent waits for the first message on msgs that match accepts.
func recvEvent(t *testing.T, msgs <-chan events.Message, errs <-chan error, what string, match func(events.Message) bool) events.Message {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m := <-msgs:
			if match(m) {
				return m
			}
		case err := <-errs:
			t.Fatalf("event stream ended while waiting for %s: %v", what, err)
		case <-timeout:
			t.Fatalf("no %s event within 20s", what)
		}
	}
}

// TestMobyClient drives the server with github.com/moby/moby/client, the
// client Traefik uses: negotiation, the container lifecycle, logs, exec,
// wait, events, networks and images, with its filter encoding.
func TestMobyClient(t *testing.T) {
	d := startDaemon(t)
	cli := mobyClient(t, d)
	ctx := context.Background()

	ping, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil || ping.APIVersion != "1.51" || ping.OSType != "linux" {
		t.Fatalf("ping: %+v %v", ping, err)
	}
	ver, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil || ver.APIVersion != "1.51" || ver.MinAPIVersion != "1.24" || ver.Version != "0.0.0-test" {
		t.Fatalf("version: %+v %v", ver, err)
	}
	info, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil || info.Info.OSType != "linux" || info.Info.Swarm.LocalNodeState != "inactive" || info.Info.Images != 1 {
		t.Fatalf("info: %+v %v", info, err)
	}

	// Traefik's event subscription, opened before anything happens.
	ectx, ecancel := context.WithCancel(ctx)
	defer ecancel()
	ev := cli.Events(ectx, client.EventsListOptions{Filters: make(client.Filters).Add("type", "container")})

	create := func(name string, labels map[string]string, cmd ...string) string {
		t.Helper()
		res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: &container.Config{
			Image: "busybox:test", Cmd: cmd, Labels: labels, Env: []string{"VIRTUAL_HOST=" + name + ".test"},
			ExposedPorts: network.PortSet{network.MustParsePort("80/tcp"): {}},
		}})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if len(res.ID) != 64 || res.Warnings == nil {
			t.Fatalf("create %s: %+v", name, res)
		}
		return res.ID
	}
	a := create("ca", map[string]string{"app": "a"}, "sh", "-c", "echo out; echo err >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")
	b := create("cb", map[string]string{"app": "b"}, "sh", "-c", "echo bye; exit 3")

	if _, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "ca", Config: &container.Config{Image: "busybox:test", Cmd: []string{"true"}}}); !cerrdefs.IsConflict(err) {
		t.Errorf("create with a used name: %v, want a conflict", err)
	}
	if _, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: "nosuch:1"}}); !cerrdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such image: nosuch:1") {
		t.Errorf("create from a missing image: %v, want No such image", err)
	}

	// docker run's order: wait (next-exit) before start.
	wait := cli.ContainerWait(ctx, b, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	for _, id := range []string{a, b} {
		if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("start: %v", err)
		}
	}
	select {
	case res := <-wait.Result:
		if res.StatusCode != 3 {
			t.Errorf("wait b: status %d, want 3", res.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatalf("wait b: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("wait b: no answer in 20s")
	}
	die := recvEvent(t, ev.Messages, ev.Err, "die of b", func(m events.Message) bool { return m.Action == events.ActionDie && m.Actor.ID == b })
	if die.Actor.Attributes["exitCode"] != "3" || die.Actor.Attributes["name"] != "cb" || die.Actor.Attributes["app"] != "b" || die.Time == 0 || die.TimeNano == 0 {
		t.Errorf("die event: %+v", die)
	}

	// Lists, with the CLI's filter encoding.
	list := func(all bool, f client.Filters) []string {
		t.Helper()
		res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: all, Filters: f})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		var names []string
		for _, c := range res.Items {
			names = append(names, strings.Join(c.Names, ","))
		}
		slices.Sort(names)
		return names
	}
	for _, tc := range []struct {
		all  bool
		f    client.Filters
		want []string
	}{
		{false, nil, []string{"/ca"}},
		{true, nil, []string{"/ca", "/cb"}},
		{false, make(client.Filters).Add("status", "exited"), []string{"/cb"}},
		{true, make(client.Filters).Add("label", "app=a"), []string{"/ca"}},
		{true, make(client.Filters).Add("label", "app"), []string{"/ca", "/cb"}},
		{true, make(client.Filters).Add("name", "^/cb$"), []string{"/cb"}},
		{true, make(client.Filters).Add("name", "^cb$"), []string{"/cb"}},
		{true, make(client.Filters).Add("exited", "3"), []string{"/cb"}},
		{true, make(client.Filters).Add("expose", "80/tcp"), []string{"/ca", "/cb"}},
		{true, make(client.Filters).Add("publish", "80"), nil},
		{true, make(client.Filters).Add("ancestor", "busybox:test"), []string{"/ca", "/cb"}},
		{true, make(client.Filters).Add("network", "bridge"), []string{"/ca", "/cb"}},
		{true, make(client.Filters).Add("id", a[:10]), []string{"/ca"}},
	} {
		if got := list(tc.all, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("list all=%v filters %v: %v, want %v", tc.all, tc.f, got, tc.want)
		}
	}

	in, err := cli.ContainerInspect(ctx, "ca", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := in.Container
	if !c.State.Running || c.Name != "/ca" || c.Config.Labels["app"] != "a" || c.Path != "sh" {
		t.Errorf("inspect a: %+v %+v", c.State, c.Config)
	}
	if _, err := time.Parse(time.RFC3339Nano, c.Created); err != nil {
		t.Errorf("Created %q: %v", c.Created, err)
	}
	if c.State.FinishedAt != "0001-01-01T00:00:00Z" {
		t.Errorf("FinishedAt of a running container %q", c.State.FinishedAt)
	}
	if bindings, ok := c.NetworkSettings.Ports[network.MustParsePort("80/tcp")]; !ok || bindings != nil {
		t.Errorf("exposed unpublished port: %v (present %v), want 80/tcp: null", bindings, ok)
	}
	if !strings.Contains(string(in.Raw), `"80/tcp":null`) {
		t.Errorf("raw inspect lacks \"80/tcp\":null: %s", in.Raw)
	}
	ep := c.NetworkSettings.Networks["bridge"]
	if ep == nil || !d.rt.Network().Subnet().Contains(ep.IPAddress) || !ep.Gateway.IsValid() || len(ep.EndpointID) != 64 {
		t.Errorf("bridge endpoint: %+v", ep)
	}
	if _, err := cli.ContainerInspect(ctx, "nosuch", client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("inspect nosuch: %v", err)
	}

	// Logs: the framing, stderr apart, tail and timestamps, follow.
	readLogs := func(opts client.ContainerLogsOptions) (string, string) {
		t.Helper()
		rc, err := cli.ContainerLogs(ctx, "cb", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var o, e bytes.Buffer
		if _, err := stdcopy.StdCopy(&o, &e, rc); err != nil {
			t.Fatalf("logs framing: %v", err)
		}
		return o.String(), e.String()
	}
	if o, e := readLogs(client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true}); o != "bye\n" || e != "" {
		t.Errorf("logs b: %q %q", o, e)
	}
	waitFor(t, 10*time.Second, "a's output", func() bool {
		var o, e bytes.Buffer
		rc, err := cli.ContainerLogs(ctx, "ca", client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			return false
		}
		defer rc.Close()
		_, _ = stdcopy.StdCopy(&o, &e, rc)
		return strings.HasPrefix(o.String(), "out\ntick 1\n") && strings.Contains(o.String(), "tick 3\n") && e.String() == "err\n"
	})
	rc, err := cli.ContainerLogs(ctx, a, client.ContainerLogsOptions{ShowStdout: true, Tail: "1", Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	var o bytes.Buffer
	_, _ = stdcopy.StdCopy(&o, io.Discard, rc)
	rc.Close()
	if lines := strings.Split(strings.TrimSpace(o.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], " tick ") {
		t.Errorf("tail 1 with timestamps: %q", o.String())
	} else if ts, _, _ := strings.Cut(lines[0], " "); len(ts) != 30 {
		t.Errorf("timestamp %q, want dockerd's fixed 9-digit RFC 3339", ts)
	} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("timestamp %q: %v", ts, err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	frc, err := cli.ContainerLogs(fctx, a, client.ContainerLogsOptions{ShowStdout: true, Follow: true, Tail: "0"})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { _, err := stdcopy.StdCopy(pw, io.Discard, frc); pw.CloseWithError(err) }()
	buf := make([]byte, 64)
	n, err := pr.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "tick ") {
		t.Errorf("follow: %q %v", buf[:n], err)
	}
	fcancel()
	frc.Close()
	// follow with until ends at until though the container runs on.
	t0 := time.Now()
	urc, err := cli.ContainerLogs(ctx, a, client.ContainerLogsOptions{ShowStdout: true, Follow: true, Tail: "0",
		Until: fmt.Sprintf("%d.%09d", t0.Add(time.Second).Unix(), t0.Add(time.Second).Nanosecond())})
	if err != nil {
		t.Fatal(err)
	}
	var uo bytes.Buffer
	if _, err := stdcopy.StdCopy(&uo, io.Discard, urc); err != nil || time.Since(t0) > 5*time.Second || !strings.Contains(uo.String(), "tick ") {
		t.Errorf("follow until +1s: %v after %s: %q", err, time.Since(t0), uo.String())
	}
	urc.Close()
	if _, err := cli.ContainerAttach(ctx, b, client.ContainerAttachOptions{Stream: true, Stdout: true}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("attach to a stopped container: %v, want a conflict", err)
	}

	// Exec (non-TTY): output streams apart, the exit code.
	ex, err := cli.ExecCreate(ctx, a, client.ExecCreateOptions{Cmd: []string{"sh", "-c", "echo hi $X; echo oops >&2; exit 5"}, Env: []string{"X=there"}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	att, err := cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var eo, ee bytes.Buffer
	if _, err := stdcopy.StdCopy(&eo, &ee, att.Reader); err != nil {
		t.Errorf("exec stream: %v", err)
	}
	att.Close()
	if eo.String() != "hi there\n" || ee.String() != "oops\n" {
		t.Errorf("exec output %q %q", eo.String(), ee.String())
	}
	ei, err := cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil || ei.ExitCode != 5 || ei.Running || ei.ContainerID != a {
		t.Errorf("exec inspect: %+v %v", ei, err)
	}
	if _, err := cli.ExecCreate(ctx, b, client.ExecCreateOptions{Cmd: []string{"true"}}); !cerrdefs.IsConflict(err) {
		t.Errorf("exec in a stopped container: %v, want a conflict", err)
	}

	// Restart, kill, stop, remove.
	if _, err := cli.ContainerRestart(ctx, a, client.ContainerRestartOptions{Timeout: ptr(1)}); err != nil {
		t.Fatalf("restart: %v", err)
	}
	recvEvent(t, ev.Messages, ev.Err, "restart of a", func(m events.Message) bool { return m.Action == events.ActionRestart && m.Actor.ID == a })
	if _, err := cli.ContainerKill(ctx, a, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("kill: %v", err)
	}
	die = recvEvent(t, ev.Messages, ev.Err, "die of a", func(m events.Message) bool { return m.Action == events.ActionDie && m.Actor.ID == a })
	if die.Actor.Attributes["exitCode"] != "137" {
		t.Errorf("die after SIGKILL: %+v", die.Actor.Attributes)
	}
	if _, err := cli.ContainerKill(ctx, a, client.ContainerKillOptions{}); !cerrdefs.IsConflict(err) {
		t.Errorf("kill a stopped container: %v, want a conflict", err)
	}
	if _, err := cli.ContainerStart(ctx, a, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerRemove(ctx, a, client.ContainerRemoveOptions{}); !cerrdefs.IsConflict(err) || !strings.Contains(err.Error(), "container is running") {
		t.Errorf("remove running: %v, want a conflict", err)
	}
	removed := cli.ContainerWait(ctx, a, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	time.Sleep(100 * time.Millisecond) // the wait is registered
	if _, err := cli.ContainerRemove(ctx, a, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatalf("remove -f: %v", err)
	}
	select {
	case res := <-removed.Result:
		if res.StatusCode != 137 {
			t.Errorf("wait removed: %d, want 137", res.StatusCode)
		}
	case err := <-removed.Error:
		t.Errorf("wait removed: %v", err)
	case <-time.After(20 * time.Second):
		t.Error("wait removed: no answer")
	}
	notRunning := cli.ContainerWait(ctx, b, client.ContainerWaitOptions{})
	select {
	case res := <-notRunning.Result:
		if res.StatusCode != 3 {
			t.Errorf("wait not-running on an exited container: %d", res.StatusCode)
		}
	case err := <-notRunning.Error:
		t.Errorf("wait not-running: %v", err)
	case <-time.After(10 * time.Second):
		t.Error("wait not-running on an exited container did not return at once")
	}
	if _, err := cli.ContainerStop(ctx, b, client.ContainerStopOptions{}); err != nil {
		t.Errorf("stop of a stopped container (304): %v", err)
	}
	if _, err := cli.ContainerRemove(ctx, b, client.ContainerRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	recvEvent(t, ev.Messages, ev.Err, "destroy of b", func(m events.Message) bool { return m.Action == events.ActionDestroy && m.Actor.ID == b })

	// Networks and images.
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil || len(nets.Items) != 3 {
		t.Fatalf("networks: %+v %v", nets, err)
	}
	br, err := cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil || len(br.Network.IPAM.Config) != 1 || br.Network.IPAM.Config[0].Subnet != d.rt.Network().Subnet() {
		t.Errorf("network inspect bridge: %+v %v", br, err)
	}
	if _, err := cli.NetworkInspect(ctx, "nosuch", client.NetworkInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("network inspect nosuch: %v", err)
	}
	imgs, err := cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil || len(imgs.Items) != 1 || !slices.Equal(imgs.Items[0].RepoTags, []string{"busybox:test"}) {
		t.Errorf("images: %+v %v", imgs, err)
	}
	ii, err := cli.ImageInspect(ctx, "busybox:test")
	if err != nil || ii.ID != imgs.Items[0].ID || ii.Os != "linux" {
		t.Errorf("image inspect: %+v %v", ii, err)
	}
	if _, err := cli.ImageInspect(ctx, "nosuch:1"); !cerrdefs.IsNotFound(err) {
		t.Errorf("image inspect nosuch: %v", err)
	}

	// A client pinned above the server's maximum gets dockerd's message.
	pinned := mobyClient(t, d, client.WithAPIVersion("1.54"))
	if _, err := pinned.ServerVersion(ctx, client.ServerVersionOptions{}); err == nil || !strings.Contains(err.Error(), "client version 1.54 is too new. Maximum supported API version is 1.51") {
		t.Errorf("pinned 1.54: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestGoDockerClient drives the server the way docker-gen does, with
// github.com/fsouza/go-dockerclient: unversioned paths, the legacy filter
// encoding, the legacy NetworkSettings fields, its event listener, and
// the kill/restart of its notify options.
func TestGoDockerClient(t *testing.T) {
	d := startDaemon(t)
	cli, err := dockerclient.NewClient(d.host)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	env, err := cli.Version()
	if err != nil || env.Get("ApiVersion") != "1.51" || env.Get("Os") != "linux" {
		t.Fatalf("version: %v %v", env, err)
	}
	info, err := cli.Info()
	if err != nil || info.OSType != "linux" {
		t.Fatalf("info: %+v %v", info, err)
	}

	listener := make(chan *dockerclient.APIEvents, 64)
	if err := cli.AddEventListenerWithOptions(dockerclient.EventsOptions{
		Filters: map[string][]string{"event": {"start", "stop", "die", "health_status"}},
	}, listener); err != nil {
		t.Fatal(err)
	}
	defer cli.RemoveEventListener(listener)
	next := func(what string, match func(*dockerclient.APIEvents) bool) *dockerclient.APIEvents {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case e := <-listener:
				if match(e) {
					return e
				}
			case <-timeout:
				t.Fatalf("no %s event in 20s", what)
			}
		}
	}

	run := func(name, vhost string, cmd ...string) string {
		t.Helper()
		c, err := cli.CreateContainer(dockerclient.CreateContainerOptions{Name: name, Config: &dockerclient.Config{
			Image: "busybox:test", Cmd: cmd, Env: []string{"VIRTUAL_HOST=" + vhost},
			ExposedPorts: map[dockerclient.Port]struct{}{"80/tcp": {}},
		}})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if err := cli.StartContainer(c.ID, nil); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		return c.ID
	}
	web := run("web", "web.test", "sh", "-c", "trap 'echo hup' HUP; echo trapped; while true; do sleep 0.1; done")
	start := next("start of web", func(e *dockerclient.APIEvents) bool { return e.Action == "start" && e.Actor.ID == web })
	if start.Time == 0 || start.Status != "start" || start.ID != web || start.From != "busybox:test" {
		t.Errorf("start event (legacy fields for docker-gen): %+v", start)
	}
	gone := run("gone", "gone.test", "true")
	next("die of gone", func(e *dockerclient.APIEvents) bool { return e.Action == "die" && e.Actor.ID == gone })

	// docker-gen's list: all=1 with the legacy {"status":["running"]}.
	cs, err := cli.ListContainers(dockerclient.ListContainersOptions{All: true, Filters: map[string][]string{"status": {"running"}}})
	if err != nil || len(cs) != 1 || cs[0].ID != web {
		t.Fatalf("list running (legacy filters): %+v %v", cs, err)
	}
	cs, err = cli.ListContainers(dockerclient.ListContainersOptions{All: true, Filters: map[string][]string{"status": {"exited"}, "name": {"gone"}}})
	if err != nil || len(cs) != 1 || cs[0].ID != gone {
		t.Fatalf("list exited (legacy filters): %+v %v", cs, err)
	}
	if _, err := cli.ListContainers(dockerclient.ListContainersOptions{Filters: map[string][]string{"colour": {"blue"}}}); err == nil || !strings.Contains(err.Error(), "invalid filter 'colour'") {
		t.Errorf("unknown filter key: %v", err)
	}

	c, err := cli.InspectContainerWithOptions(dockerclient.InspectContainerOptions{ID: web})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(c.NetworkSettings.IPAddress)
	if err != nil || !d.rt.Network().Subnet().Contains(ip) || c.NetworkSettings.Gateway == "" {
		t.Errorf("legacy NetworkSettings.IPAddress %q Gateway %q", c.NetworkSettings.IPAddress, c.NetworkSettings.Gateway)
	}
	if c.NetworkSettings.Networks["bridge"].IPAddress != c.NetworkSettings.IPAddress {
		t.Errorf("Networks[bridge] %+v", c.NetworkSettings.Networks)
	}
	if _, ok := c.NetworkSettings.Ports["80/tcp"]; !ok {
		t.Errorf("Ports %v lacks 80/tcp", c.NetworkSettings.Ports)
	}
	if c.Created.IsZero() || c.State.StartedAt.IsZero() || !c.State.FinishedAt.IsZero() || !c.State.Running {
		t.Errorf("times and state: created %v %+v", c.Created, c.State)
	}
	if c.Name != "/web" || !slices.Contains(c.Config.Env, "VIRTUAL_HOST=web.test") || c.HostConfig.NetworkMode != "bridge" {
		t.Errorf("inspect: name %q env %v mode %q", c.Name, c.Config.Env, c.HostConfig.NetworkMode)
	}
	nets, err := cli.ListNetworks()
	if err != nil || len(nets) != 3 {
		t.Errorf("networks: %+v %v", nets, err)
	}

	// docker-gen's notify: a signal, then a restart. The signal waits for
	// the shell's trap: sent before it, under load, it ended the shell.
	logs := func() string {
		var o bytes.Buffer
		_ = cli.Logs(dockerclient.LogsOptions{Container: web, Stdout: true, OutputStream: &o, ErrorStream: io.Discard})
		return o.String()
	}
	waitFor(t, 10*time.Second, "the shell's trap set", func() bool { return strings.Contains(logs(), "trapped") })
	// Under the full suite's load the first HUP was seen not to show in
	// 10 s (twice in CI, never alone): it is sent again every 2 s, which
	// the trap survives, for up to 30 s.
	var sent time.Time
	waitFor(t, 30*time.Second, "the trapped HUP in the logs", func() bool {
		if time.Since(sent) > 2*time.Second {
			if err := cli.KillContainer(dockerclient.KillContainerOptions{ID: web, Signal: dockerclient.SIGHUP}); err != nil {
				t.Fatalf("kill HUP: %v", err)
			}
			sent = time.Now()
		}
		return strings.Contains(logs(), "hup")
	})
	if err := cli.RestartContainer(web, 1); err != nil {
		t.Fatalf("restart: %v", err)
	}
	next("stop of web", func(e *dockerclient.APIEvents) bool { return e.Action == "stop" && e.Actor.ID == web })
	next("start of web after restart", func(e *dockerclient.APIEvents) bool { return e.Action == "start" && e.Actor.ID == web })
	if err := cli.StopContainer(web, 1); err != nil {
		t.Fatalf("stop: %v", err)
	}
	next("die of web", func(e *dockerclient.APIEvents) bool { return e.Action == "die" && e.Actor.ID == web })
	if err := cli.RemoveContainer(dockerclient.RemoveContainerOptions{ID: web}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.InspectContainerWithOptions(dockerclient.InspectContainerOptions{ID: web}); err == nil {
		t.Error("inspect of a removed container succeeded")
	}
}
