// Package browser_test loads the status page in headless Chromium
// (Debian's chromium) against a real berth up (daemon.Run with the
// embedded runtime and the embedded store) and real containers, and
// asserts on the page's DOM text as it updates itself.
package browser_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// The longest the page may take to show a container after its run.
const appearWithin = time.Second

// drain is the daemon's drain: how long a stopped container shows as
// draining.
const drain = 3 * time.Second

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon runs berth up in-process: the embedded runtime on a bridge
// of the test's own, the embedded store, the status page on a loopback
// port, one template listing the services.
func startDaemon(t *testing.T) (listen string, client *api.Client) {
	t.Helper()
	env := embeddedtest.NewEnv(t)
	embeddedtest.CleanupEnv(t, env) // after the daemon has stopped: containers, netns, bridge
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "services.tmpl"), filepath.Join(dir, "services.txt")
	if err := os.WriteFile(src, []byte(`{{range $k, $v := .Services}}{{$k}} {{len $v}}{{"\n"}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := config.ParseTemplateFlag(src+":"+dest, dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Name = "services"
	s := daemon.Settings{
		Runtime: daemon.RuntimeEmbedded,
		Subnet:  env.Subnet.String(), Bridge: env.Bridge, CgroupParent: env.CgroupParent,
		StateDir:  env.StateDir,
		Socket:    filepath.Join(dir, "berth.sock"),
		Listen:    freeAddr(t),
		Templates: []config.Template{tmpl},
		Version:   "browser-test",
		Daemon: daemon.Config{
			Registrar: registrar.Config{Host: "status-e2e", Drain: drain, TTL: 5 * time.Second},
			Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, s) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	client = api.NewClient(s.Socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + s.Listen + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && client.Ping(t.Context()) == nil {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("daemon exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not healthy after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s.Listen, client
}

// browser starts headless Chromium; Fatal without it (scripts/install-deps
// installs Debian's chromium).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (scripts/install-deps installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", "new"), // as root in CI
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelB()
		cancelA() // kills the browser it started and waits for it
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshotDir is $BERTH_SCREENSHOT_DIR, else a directory of the test's.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("BERTH_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// screenshot saves the whole page at a width×height viewport.
func screenshot(t *testing.T, ctx context.Context, dir, name string, width, height int64) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height), chromedp.Sleep(200*time.Millisecond)) // layout after the resize
	var png []byte
	if err == nil {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	}
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	// Readable at this width: nothing makes the page scroll sideways.
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int64](`document.documentElement.scrollWidth`)); err != nil || w > width {
		t.Errorf("%s: the page is %d px wide at a %d px viewport (%v)", name, w, width, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %dx%d: %s", width, height, path)
}

// instanceState is the state shown for the instance named name in the
// services section ("" when it is not shown).
const instanceStateJS = `(name => {
  for (const tr of document.querySelectorAll("#services tr")) {
    const cells = tr.querySelectorAll("td");
    if (cells.length && cells[0].innerText.split("\n")[0] === name) return cells[3].innerText.trim();
  }
  return "";
})(%q)`

func TestStatusPageLive(t *testing.T) {
	ctx := browser(t)
	listen, client := startDaemon(t)

	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.BuildWhoami(t, rootfs)
	if _, err := client.Import(t.Context(), rootfs, "whoami:status"); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate("http://"+listen+"/")); err != nil {
		t.Fatal(err)
	}
	text := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate: %v", err)
		}
		return s
	}
	// until polls the DOM until ok holds, for at most d; it returns how long that took.
	until := func(what string, d time.Duration, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok() {
			if time.Since(start) > d {
				t.Fatalf("%s: not within %s; the page says:\n%s", what, d, text("document.body.innerText"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	until("the page connected", 10*time.Second, func() bool {
		return strings.HasPrefix(text(`document.getElementById("live").innerText`), "live")
	})
	if got := text(`document.getElementById("host").innerText`); !strings.Contains(got, "status-e2e") {
		t.Errorf("header host %q, want status-e2e", got)
	}

	// Hostile metadata: a VIRTUAL_HOST that is markup. The registrar leaves
	// it out and the page names it, as text: no element is made of it.
	const hostileHost = `<img id=pwned src=x onerror=alert(1)>.example.com`
	hostile, err := client.Run(t.Context(), runtime.Spec{Name: "hostile", Image: "whoami:status", Cmd: []string{"/whoami"},
		Env:    []string{"VIRTUAL_HOST=" + hostileHost, "PORT=80"},
		Labels: map[string]string{"berth.service": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Remove(context.Background(), hostile.ID, runtime.Force()) })
	until("the hostile container's left-out VIRTUAL_HOST named", 10*time.Second, func() bool {
		return strings.Contains(text(`document.getElementById("services").innerText`), "left out of the record: VIRTUAL_HOST=")
	})
	if n := text(`String(document.querySelectorAll("#pwned, #services img, #containers img").length)`); n != "0" {
		t.Errorf("the hostile VIRTUAL_HOST became %s element(s) on the page", n)
	}

	const name = "web-status-e2e"
	ran := time.Now()
	ctr, err := client.Run(t.Context(), runtime.Spec{Name: name, Image: "whoami:status", Cmd: []string{"/whoami"},
		Env:    []string{"VIRTUAL_HOST=web.localhost", "PORT=80", "WHOAMI_NAME=" + name},
		Labels: map[string]string{"berth.service": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Remove(context.Background(), ctr.ID, runtime.Force()) })
	state := func() string { return text(fmt.Sprintf(instanceStateJS, name)) }
	until("the container running on the page", 10*time.Second, func() bool { return state() == "running" })
	took := time.Since(ran)
	t.Logf("the container showed as running %s after berth run returned", took.Round(time.Millisecond))
	if took > appearWithin {
		t.Errorf("the container showed %s after its run, want within %s", took.Round(time.Millisecond), appearWithin)
	}
	if c := text(`document.getElementById("containers").innerText`); !strings.Contains(c, name) || !strings.Contains(c, "/berth/services/web/status-e2e/") {
		t.Errorf("containers section has no %s with its record:\n%s", name, c)
	}
	// The template rendered the new service: the page says so.
	until("the template's change", 10*time.Second, func() bool {
		return strings.Contains(text(`document.getElementById("templates").innerText`), "changed")
	})

	// The diff of that change, opened as a reader would; it stays open
	// across the updates that follow.
	text(`(() => { const d = document.querySelector("#templates details"); if (d) d.open = true; return ""; })()`)
	until("the diff of the change", 5*time.Second, func() bool {
		return strings.Contains(text(`(document.querySelector("#templates details[open] pre") || {innerText: ""}).innerText`), "+web 2")
	})

	shots := screenshotDir(t)
	screenshot(t, ctx, shots, "desktop-1280x800", 1280, 800)
	screenshot(t, ctx, shots, "phone-390x844", 390, 844)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatal(err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- client.Stop(context.Background(), ctr.ID, 5*time.Second) }()
	until("draining during the stop", 5*time.Second, func() bool { return state() == "draining" })
	screenshot(t, ctx, shots, "draining-390x844", 390, 844)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatal(err)
	}
	gone := until("gone after the drain", drain+10*time.Second, func() bool {
		return !strings.Contains(text(`document.getElementById("services").innerText`), name)
	})
	t.Logf("the instance left the page %s after it showed draining (drain %s)", gone.Round(time.Millisecond), drain)
	if err := <-stopped; err != nil {
		t.Errorf("stop: %v", err)
	}
	if body := text("document.body.innerText"); strings.Contains(body, name) {
		t.Errorf("the stopped container is still on the page after the drain:\n%s", body)
	}
}
