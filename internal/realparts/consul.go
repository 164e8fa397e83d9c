package realparts

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// ConsulVersion is the Consul release scripts/install-deps builds and caches.
const ConsulVersion = "v1.22.0"

// Consul is a Consul agent in dev mode (in-memory state, single server),
// listening on 127.0.0.1 only.
type Consul struct {
	// Addr is the agent's HTTP API address, host:port.
	Addr string
	// HTTPSAddr is the HTTPS API address with WithConsulHTTPS, else "".
	HTTPSAddr string
	// Token is the initial management token when ACLs are enabled, else "".
	Token string

	bin     string
	dir     string
	logPath string
	args    []string
	cmd     *exec.Cmd
	waitErr chan error
}

type consulOptions struct {
	config string
	token  string
	https  bool
}

// ConsulOption configures StartConsul.
type ConsulOption func(*consulOptions)

// WithConsulACL enables ACLs with default policy deny and token as the
// initial management token (Consul.Token).
func WithConsulACL(token string) ConsulOption {
	return func(o *consulOptions) {
		o.token = token
		o.config += fmt.Sprintf("\nacl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens { initial_management = %q }\n}\n", token)
	}
}

// WithConsulHTTPS also serves the HTTP API over TLS (Consul.HTTPSAddr)
// with the given PEM files, requiring client certificates signed by ca.
func WithConsulHTTPS(ca, cert, key string) ConsulOption {
	return func(o *consulOptions) {
		o.https = true
		o.config += fmt.Sprintf("\ntls {\n  https {\n    ca_file = %q\n    cert_file = %q\n    key_file = %q\n    verify_incoming = true\n  }\n}\n", ca, cert, key)
	}
}

// ConsulBinary returns the consul binary the tests use: $BERTH_CONSUL, else
// the one scripts/install-deps caches under $HOME/.cache/berth.
func ConsulBinary() (string, error) {
	if p := os.Getenv("BERTH_CONSUL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("BERTH_CONSUL=%s: %w", p, err)
		}
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no consul binary: BERTH_CONSUL unset and %w", err)
	}
	p := filepath.Join(home, ".cache", "berth", "consul-"+ConsulVersion, "consul")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no consul binary: BERTH_CONSUL unset and %s missing; run scripts/install-deps to build it", p)
	}
	return p, nil
}

// StartConsul starts a dev-mode agent and waits until its KV API answers.
// Its configuration raises Consul's KV value limit from 512 KiB to 1.5 MiB
// (1 MiB values work, 2 MiB ones are refused) and the transaction size
// limit to 8 MiB. The caller calls Stop.
func StartConsul(opts ...ConsulOption) (*Consul, error) {
	o := consulOptions{config: "limits {\n  kv_max_value_size = 1572864\n  txn_max_req_len = 8388608\n}\n"}
	for _, f := range opts {
		f(&o)
	}
	bin, err := ConsulBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "berth-consul-")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(o.config), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ports, err := FreePorts(5)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &Consul{
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		Token:   o.token,
		bin:     bin,
		dir:     dir,
		logPath: filepath.Join(dir, "agent.log"),
		args: []string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
			"-http-port", strconv.Itoa(ports[0]), "-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
			"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
			"-server-port", strconv.Itoa(ports[3]),
			"-data-dir", filepath.Join(dir, "data"), "-config-file", cfg},
	}
	if o.https {
		c.HTTPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[4]))
		c.args = append(c.args, "-https-port", strconv.Itoa(ports[4]))
	}
	if err := c.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Consul) start() error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.bin, c.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	waitErr, err := startTied(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", c.bin, err)
	}
	c.cmd = cmd
	c.waitErr = waitErr
	if err := c.waitReady(30 * time.Second); err != nil {
		c.kill()
		return fmt.Errorf("consul agent on %s: %w\n%s", c.Addr, err, c.logTail())
	}
	return nil
}

// waitReady polls until the agent has a leader and serves KV reads.
func (c *Consul) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		select {
		case err := <-c.waitErr:
			c.waitErr <- err
			return fmt.Errorf("agent exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %v", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+"/v1/kv/berth-testenv-ready-probe", nil)
		if c.Token != "" {
			req.Header.Set("X-Consul-Token", c.Token)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Errorf("GET /v1/kv: %s", resp.Status)
	}
}

// Restart kills the agent (kill -9) and starts it again on the same ports.
// Dev mode keeps state in memory only, so the new agent starts empty and
// its indexes start over.
func (c *Consul) Restart() error {
	c.kill()
	return c.start()
}

// Kill stops the agent with SIGKILL and waits for it; Restart brings it back.
func (c *Consul) Kill() { c.kill() }

func (c *Consul) kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.waitErr
	c.cmd = nil
}

// Stop kills the agent and removes its directory.
func (c *Consul) Stop() {
	c.kill()
	os.RemoveAll(c.dir)
}

func (c *Consul) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	if i := len(b) - 4000; i > 0 {
		b = b[i:]
	}
	return string(bytes.TrimSpace(b))
}
