package realparts

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berthd/berth/endpoints/haproxy"
)

// HAProxy is a real HAProxy (Debian's) in master-worker mode with its
// config, pid file, admin socket, host map and log inside one directory
// (the live directory of berth's HAProxy sink, endpoints/haproxy), listening
// on a free loopback port. The caller writes (or has berth render) its
// haproxy.cfg, then starts it, and calls Stop. Start may be called again
// after Stop: a restarted HAProxy is a new process with the same files.
type HAProxy struct {
	Dir    string // haproxy.cfg, haproxy.pid, haproxy.sock, hosts.map, haproxy.log
	Conf   string // Dir/haproxy.cfg
	Socket string // Dir/haproxy.sock: the Runtime API (stats socket, level admin); Dir is the live directory
	Addr   string // 127.0.0.1:port the test's frontend should bind
	Bin    string

	cmd  *exec.Cmd
	done chan struct{}
}

// HAProxyBinary finds haproxy: $BERTH_HAPROXY, else haproxy on PATH or
// /usr/sbin.
func HAProxyBinary() (string, error) {
	if p := os.Getenv("BERTH_HAPROXY"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", nil
	}
	return "", fmt.Errorf("haproxy not found: install Debian's haproxy (scripts/install-deps) or set BERTH_HAPROXY")
}

// NewHAProxy prepares an HAProxy directory dir (which must exist) and a
// port; it does not start HAProxy. A unix socket path is limited to 107
// bytes, so dir must be short.
func NewHAProxy(dir string) (*HAProxy, error) {
	bin, err := HAProxyBinary()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, haproxy.SocketFile)
	if len(sock) > 100 {
		return nil, fmt.Errorf("haproxy admin socket path %q is too long for a unix socket", sock)
	}
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	return &HAProxy{Dir: dir, Conf: filepath.Join(dir, "haproxy.cfg"), Socket: sock,
		Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Bin: bin}, nil
}

// Global is a global section that keeps everything HAProxy writes inside
// Dir and opens the admin socket. A test's config is Global, a defaults
// section and its own proxies.
func (h *HAProxy) Global() string {
	return fmt.Sprintf(`global
    stats socket %s mode 600 level admin
    pidfile %s
    log stdout format raw local0 notice
`, h.Socket, h.PIDFile())
}

// PIDFile is where the master writes its pid.
func (h *HAProxy) PIDFile() string { return filepath.Join(h.Dir, "haproxy.pid") }

// CheckCommand is a berth check command testing a staged haproxy.cfg.
func (h *HAProxy) CheckCommand() string {
	return fmt.Sprintf("%s -c -q -f {{.src}}", h.Bin)
}

// ReloadCommand is a berth reload command for this HAProxy: SIGUSR2 to
// the master, which starts a new worker on the new config.
func (h *HAProxy) ReloadCommand() string {
	return fmt.Sprintf("kill -USR2 $(cat %s)", h.PIDFile())
}

// MasterPID is the pid of the running master, or 0.
func (h *HAProxy) MasterPID() int {
	if h.cmd == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// Start runs HAProxy in the foreground (master-worker) on Conf, which must
// exist, and waits until its admin socket accepts connections and Addr
// accepts TCP.
func (h *HAProxy) Start() error {
	if h.cmd != nil {
		return fmt.Errorf("haproxy already running (pid %d)", h.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(filepath.Join(h.Dir, "haproxy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(h.Bin, "-W", "-db", "-f", h.Conf, "-p", h.PIDFile())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	waitErr, err := startTied(cmd)
	if err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	h.cmd, h.done = cmd, make(chan struct{})
	done := h.done
	go func() { <-waitErr; close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if h.answers() {
			return nil
		}
		select {
		case <-done:
			h.cmd = nil
			return fmt.Errorf("haproxy exited at start: %s", h.Log())
		default:
		}
		if time.Now().After(deadline) {
			h.Stop()
			return fmt.Errorf("haproxy not answering on %s and %s: %s", h.Addr, h.Socket, h.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers reports whether the admin socket and the listen address both
// accept connections.
func (h *HAProxy) answers() bool {
	for _, a := range [][2]string{{"unix", h.Socket}, {"tcp", h.Addr}} {
		c, err := net.DialTimeout(a[0], a[1], time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// Get sends one HTTP request through HAProxy (Host header host, if set)
// and returns the status and body.
func (h *HAProxy) Get(host, path string) (int, string, error) { return httpGet(h.Addr, host, path) }

// Log returns the tail of HAProxy's output.
func (h *HAProxy) Log() string { return fileTail(filepath.Join(h.Dir, "haproxy.log")) }

// httpGet sends one HTTP request to addr without keep-alive (Host header
// host, if set) and returns the status and the body, trimmed.
func httpGet(addr, host, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// fileTail is the last 3000 bytes of a (log) file.
func fileTail(path string) string {
	b, _ := os.ReadFile(path)
	if i := len(b) - 3000; i > 0 {
		b = b[i:]
	}
	return string(b)
}

// Stop shuts HAProxy down at once (SIGTERM to the master: a hard stop,
// open connections are closed), then kills its process group after 10s.
// The admin socket file is removed, as a stopped HAProxy leaves it
// behind.
func (h *HAProxy) Stop() {
	if h.cmd == nil {
		return
	}
	pid := h.cmd.Process.Pid
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-h.done
	}
	syscall.Kill(-pid, syscall.SIGKILL) // a worker left behind by the master
	os.Remove(h.Socket)
	h.cmd = nil
}
