package realparts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdCluster is a cluster of etcd processes (Debian's etcd-server) on
// loopback ports, each member its own process that tests can kill, restart,
// freeze and thaw.
type EtcdCluster struct {
	Members []*EtcdMember
	tls     etcdOptions
}

// EtcdMember is one etcd process.
type EtcdMember struct {
	Name      string
	ClientURL string // http://127.0.0.1:port
	PeerURL   string

	bin     string
	dir     string
	args    []string
	cmd     *exec.Cmd
	waitErr chan error
}

// EtcdBinary finds the etcd server binary: $BERTH_ETCD, else etcd on PATH.
func EtcdBinary() (string, error) {
	if p := os.Getenv("BERTH_ETCD"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", errors.New("etcd binary not found: install Debian's etcd-server (scripts/install-deps) or set BERTH_ETCD")
	}
	return p, nil
}

// EtcdOption configures StartEtcd.
type EtcdOption func(*etcdOptions)

type etcdOptions struct {
	certFile, keyFile, caFile string
}

// WithEtcdClientTLS serves clients over TLS with the given server
// certificate, and requires client certificates signed by caFile.
func WithEtcdClientTLS(certFile, keyFile, caFile string) EtcdOption {
	return func(o *etcdOptions) { o.certFile, o.keyFile, o.caFile = certFile, keyFile, caFile }
}

// StartEtcd starts an n-member cluster and waits until it has a leader.
// The caller calls Stop.
func StartEtcd(n int, opts ...EtcdOption) (*EtcdCluster, error) {
	var o etcdOptions
	for _, f := range opts {
		f(&o)
	}
	clientScheme := "http"
	if o.certFile != "" {
		clientScheme = "https"
	}
	bin, err := EtcdBinary()
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "berth-etcd-")
	if err != nil {
		return nil, err
	}
	c := &EtcdCluster{tls: o}
	var initial []string
	for i := range n {
		m := &EtcdMember{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", clientScheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			bin:       bin,
			dir:       filepath.Join(root, fmt.Sprintf("m%d", i)),
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", filepath.Join(m.dir, "data"),
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(root),
			"--heartbeat-interval", "50",
			"--election-timeout", "500",
			"--log-level", "warn",
		}
		if o.certFile != "" {
			m.args = append(m.args, "--cert-file", o.certFile, "--key-file", o.keyFile,
				"--trusted-ca-file", o.caFile, "--client-cert-auth")
		}
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			c.Stop()
			return nil, err
		}
		if err := m.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitReady(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Endpoints lists the members' client addresses as host:port.
func (c *EtcdCluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.ClientURL[strings.Index(m.ClientURL, "://")+3:]
	}
	return eps
}

// URL is the berth store URL of the cluster (etcd://h1:p1,h2:p2, or
// etcds:// with TLS).
func (c *EtcdCluster) URL() string {
	if c.tls.certFile != "" {
		return "etcds://" + strings.Join(c.Endpoints(), ",")
	}
	return "etcd://" + strings.Join(c.Endpoints(), ",")
}

// WaitReady waits until a write succeeds through the live members.
func (c *EtcdCluster) WaitReady(timeout time.Duration) error {
	var live []string
	for i, m := range c.Members {
		if m.cmd != nil {
			live = append(live, c.Endpoints()[i])
		}
	}
	// Refused connections are expected while members start: no logging.
	cfg := clientv3.Config{Endpoints: live, DialTimeout: time.Second, Logger: zap.NewNop()}
	if c.tls.certFile != "" {
		// The cluster's own server certificate doubles as a client
		// certificate for this readiness probe.
		tc, err := (transport.TLSInfo{CertFile: c.tls.certFile, KeyFile: c.tls.keyFile, TrustedCAFile: c.tls.caFile}).ClientConfig()
		if err != nil {
			return err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "/testenv/ready", "1")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd cluster not ready within %s: %w; log of %s:\n%s", timeout, err, c.Members[0].Name, c.Members[0].logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills every member and removes their data.
func (c *EtcdCluster) Stop() {
	for _, m := range c.Members {
		m.Kill()
		os.RemoveAll(m.dir)
	}
	if len(c.Members) > 0 {
		os.Remove(filepath.Dir(c.Members[0].dir))
	}
}

// Start starts the member's process (again, after Kill: its data is kept).
func (m *EtcdMember) Start() error {
	if m.cmd != nil {
		return fmt.Errorf("etcd %s already running", m.Name)
	}
	logf, err := os.OpenFile(m.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so the test's terminal signals do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	waitErr, err := startTied(cmd)
	if err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	m.cmd, m.waitErr = cmd, waitErr
	return nil
}

// Kill stops the member with SIGKILL and waits for it to be gone.
func (m *EtcdMember) Kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGCONT) // a frozen process must be able to die
	m.cmd.Process.Kill()
	<-m.waitErr
	m.cmd = nil
}

// Freeze stops the member with SIGSTOP: it holds its connections open but
// answers nothing. Thaw resumes it.
func (m *EtcdMember) Freeze() error { return m.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen member with SIGCONT.
func (m *EtcdMember) Thaw() error { return m.signal(syscall.SIGCONT) }

func (m *EtcdMember) signal(sig syscall.Signal) error {
	if m.cmd == nil {
		return fmt.Errorf("etcd %s not running", m.Name)
	}
	return m.cmd.Process.Signal(sig)
}

func (m *EtcdMember) logPath() string { return filepath.Join(m.dir, "etcd.log") }

func (m *EtcdMember) logTail() string {
	b, _ := os.ReadFile(m.logPath())
	if i := len(b) - 4000; i > 0 {
		b = b[i:]
	}
	return strings.TrimSpace(string(b))
}
