package realparts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Nginx is a real nginx (Debian's) with its own prefix directory, pid file,
// logs and temp paths inside one directory, listening on a free loopback
// port. The caller writes (or has berth render) its nginx.conf, then starts
// it, and calls Stop.
type Nginx struct {
	Dir  string // prefix directory; nginx.conf lives here
	Conf string // Dir/nginx.conf
	Addr string // 127.0.0.1:port the test's server block should listen on
	Bin  string

	cmd  *exec.Cmd
	done chan struct{}
}

// NginxBinary finds nginx: $BERTH_NGINX, else nginx on PATH or /usr/sbin.
func NginxBinary() (string, error) {
	if p := os.Getenv("BERTH_NGINX"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("nginx not found: install Debian's nginx (scripts/install-deps) or set BERTH_NGINX")
}

// NewNginx prepares an nginx prefix directory dir (which must exist) and a
// port; it does not start nginx.
func NewNginx(dir string) (*Nginx, error) {
	bin, err := NginxBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	return &Nginx{Dir: dir, Conf: filepath.Join(dir, "nginx.conf"), Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), Bin: bin}, nil
}

// Prelude is the part of nginx.conf before the http block's content: it
// keeps every file nginx writes inside Dir. A test's config is Prelude,
// its own http content, and "}\n".
func (n *Nginx) Prelude() string {
	return fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
`, n.Dir)
}

// CheckCommand is a berth check command testing a staged nginx.conf.
func (n *Nginx) CheckCommand() string {
	return fmt.Sprintf("%s -t -q -p %s/ -c {{.src}}", n.Bin, n.Dir)
}

// ReloadCommand is a berth reload command for this nginx.
func (n *Nginx) ReloadCommand() string {
	return fmt.Sprintf("%s -s reload -p %s/ -c %s", n.Bin, n.Dir, n.Conf)
}

// Start runs nginx in the foreground on Conf (which must exist) and waits
// until it answers on Addr.
func (n *Nginx) Start() error {
	cmd := exec.Command(n.Bin, "-p", n.Dir+"/", "-e", filepath.Join(n.Dir, "error.log"), "-c", n.Conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	waitErr, err := startTied(cmd)
	if err != nil {
		return fmt.Errorf("start nginx: %w", err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() { <-waitErr; close(n.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := n.Get("", "/"); err == nil {
			return nil
		}
		select {
		case <-n.done:
			n.cmd = nil
			return fmt.Errorf("nginx exited at start: %s", n.ErrorLog())
		default:
		}
		if time.Now().After(deadline) {
			n.Stop()
			return fmt.Errorf("nginx not answering on %s: %s", n.Addr, n.ErrorLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Get sends one HTTP request through nginx (Host header host, if set) and
// returns the status and body.
func (n *Nginx) Get(host, path string) (int, string, error) { return httpGet(n.Addr, host, path) }

// ErrorLog returns the tail of nginx's error log.
func (n *Nginx) ErrorLog() string { return fileTail(filepath.Join(n.Dir, "error.log")) }

// Stop shuts nginx down gracefully (SIGQUIT), then kills it.
func (n *Nginx) Stop() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
	}
	n.cmd = nil
}
