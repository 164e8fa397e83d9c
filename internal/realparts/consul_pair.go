package realparts

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// ConsulPair is a Consul cluster of one server and one client agent on
// loopback, each with its own ports, node name and data directory (not
// dev mode: state survives an agent's restart). Templates and services
// talk to the client, as they do on a real host.
type ConsulPair struct {
	Server, Client *Consul
}

// StartConsulPair starts the server, then the client joined to it, and
// waits until the client serves KV reads through the server's leader. The
// caller calls Stop.
func StartConsulPair() (*ConsulPair, error) {
	bin, err := ConsulBinary()
	if err != nil {
		return nil, err
	}
	agent := func(node string, extra ...string) (*Consul, []int, error) {
		dir, err := os.MkdirTemp("", "berth-consul-"+node+"-")
		if err != nil {
			return nil, nil, err
		}
		cfg := filepath.Join(dir, "agent.hcl")
		if err := os.WriteFile(cfg, []byte("performance {\n  raft_multiplier = 1\n}\n"), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		ports, err := FreePorts(4)
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		c := &Consul{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
			bin:  bin, dir: dir, logPath: filepath.Join(dir, "agent.log"),
			args: append([]string{"agent", "-node", node, "-bind", "127.0.0.1", "-client", "127.0.0.1",
				"-http-port", strconv.Itoa(ports[0]), "-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
				"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
				"-server-port", strconv.Itoa(ports[3]),
				"-data-dir", filepath.Join(dir, "data"), "-config-file", cfg}, extra...),
		}
		return c, ports, nil
	}
	server, sports, err := agent("server", "-server", "-bootstrap-expect", "1")
	if err != nil {
		return nil, err
	}
	if err := server.start(); err != nil {
		os.RemoveAll(server.dir)
		return nil, err
	}
	client, _, err := agent("client", "-retry-join", net.JoinHostPort("127.0.0.1", strconv.Itoa(sports[1])))
	if err != nil {
		server.Stop()
		return nil, err
	}
	if err := client.start(); err != nil {
		os.RemoveAll(client.dir)
		server.Stop()
		return nil, fmt.Errorf("client agent: %w", err)
	}
	return &ConsulPair{Server: server, Client: client}, nil
}

// Stop stops both agents and removes their directories.
func (p *ConsulPair) Stop() {
	p.Client.Stop()
	p.Server.Stop()
}
