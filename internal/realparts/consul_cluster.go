package realparts

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// ConsulCluster is a Consul server agent and client agents, not in dev
// mode: each is its own process on 127.0.0.1 with its own ports and data
// directory; the clients join the server over serf LAN and forward every
// KV request to it. Killing a client (Kill) is a host whose agent died:
// the server marks its node failed and invalidates its sessions.
type ConsulCluster struct {
	Server  *Consul
	Clients []*Consul
}

// StartConsulCluster starts a server (bootstrapping alone) and n clients
// joined to it, and waits until every agent serves KV reads. The caller
// calls Stop.
func StartConsulCluster(n int) (*ConsulCluster, error) {
	bin, err := ConsulBinary()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "berth-consul-cluster-")
	if err != nil {
		return nil, err
	}
	c := &ConsulCluster{}
	cfg := filepath.Join(root, "agent.hcl")
	if err := os.WriteFile(cfg, []byte("performance {\n  raft_multiplier = 1\n}\n"), 0o600); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	agent := func(name string, server bool, join string) (*Consul, string, error) {
		ports, err := FreePorts(4)
		if err != nil {
			return nil, "", err
		}
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", err
		}
		a := &Consul{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
			bin:  bin, dir: dir, logPath: filepath.Join(dir, "agent.log"),
			args: []string{"agent", "-node", name, "-bind", "127.0.0.1", "-client", "127.0.0.1",
				"-http-port", strconv.Itoa(ports[0]), "-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
				"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
				"-server-port", strconv.Itoa(ports[3]),
				"-data-dir", filepath.Join(dir, "data"), "-config-file", cfg},
		}
		if server {
			a.args = append(a.args, "-server", "-bootstrap-expect", "1")
		} else {
			a.args = append(a.args, "-retry-join", join, "-retry-interval", "200ms")
		}
		if err := a.start(); err != nil {
			return nil, "", err
		}
		return a, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])), nil
	}
	s, join, err := agent("server", true, "")
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	c.Server = s
	for i := range n {
		a, _, err := agent(fmt.Sprintf("client%d", i), false, join)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Clients = append(c.Clients, a)
	}
	return c, nil
}

// Stop kills every agent and removes their data.
func (c *ConsulCluster) Stop() {
	var root string
	for _, a := range append([]*Consul{c.Server}, c.Clients...) {
		if a != nil {
			a.Stop()
			root = filepath.Dir(a.dir)
		}
	}
	if root != "" {
		if err := os.RemoveAll(root); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "realparts: removing %s: %v\n", root, err)
		}
	}
}
