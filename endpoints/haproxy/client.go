package haproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/berthd/berth/endpoints"
)

// Client is HAProxy's Runtime API on one stats socket, which must be
// opened with "level admin". It holds no connection: Dial opens one.
type Client struct {
	socket  string
	timeout time.Duration
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithTimeout bounds one command's round trip (default 5s); the context
// given to each call bounds it too.
func WithTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// NewClient is a client of the Runtime API on the unix socket path.
func NewClient(socket string, opts ...ClientOption) *Client {
	c := &Client{socket: socket, timeout: 5 * time.Second}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Conn is one connection to the Runtime API in interactive ("prompt")
// mode: commands run one at a time, each reply read up to the prompt.
// A Conn is not safe for concurrent use; Close it when done.
type Conn struct {
	c      *Client
	nc     net.Conn
	r      *bufio.Reader
	broken error
}

// Dial connects to the socket. An error wraps endpoints.ErrUnavailable:
// HAProxy is down, restarting, or the socket is not there.
func (c *Client) Dial(ctx context.Context) (*Conn, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	nc, err := d.DialContext(dctx, "unix", c.socket)
	if err != nil {
		return nil, fmt.Errorf("haproxy runtime API %s: %w: %w", c.socket, endpoints.ErrUnavailable, err)
	}
	conn := &Conn{c: c, nc: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	// "prompt" answers with the bare prompt, like every later command.
	if _, err := conn.run(ctx, "prompt"); err != nil {
		nc.Close()
		return nil, err
	}
	return conn, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// prompt ends every reply in interactive mode.
const prompt = "\n> "

// run sends one command line and returns HAProxy's reply without the
// prompt and trailing blank lines. A failure to write or read breaks the
// connection and wraps endpoints.ErrUnavailable.
func (c *Conn) run(ctx context.Context, line string) (string, error) {
	if c.broken != nil {
		return "", c.broken
	}
	deadline := time.Now().Add(c.c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Now()) })
	defer stop()
	reply, err := c.roundTrip(line)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		c.broken = fmt.Errorf("haproxy runtime API %s: %q: %w: %w", c.c.socket, line, endpoints.ErrUnavailable, err)
		return "", c.broken
	}
	return reply, nil
}

func (c *Conn) roundTrip(line string) (string, error) {
	if _, err := io.WriteString(c.nc, line+"\n"); err != nil {
		return "", err
	}
	var reply bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, err := c.r.Read(buf)
		reply.Write(buf[:n])
		if b := reply.Bytes(); bytes.HasSuffix(b, []byte(prompt)) {
			return strings.TrimRight(string(b[:len(b)-len(prompt)]), "\n"), nil
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}

// CommandError is a command HAProxy refused: its reply names why.
type CommandError struct {
	Command string // the command line sent
	Backend string // the backend it was for, if any
	Server  string // the server it was for, if any
	Reply   string // HAProxy's reply
}

func (e *CommandError) Error() string {
	what := ""
	switch {
	case e.Server != "":
		what = fmt.Sprintf(" (server %s/%s)", e.Backend, e.Server)
	case e.Backend != "":
		what = fmt.Sprintf(" (backend %s)", e.Backend)
	}
	return fmt.Sprintf("haproxy refused %q%s: %s", e.Command, what, strings.ReplaceAll(e.Reply, "\n", " "))
}

// Unwrap gives ErrServerBusy for a server that cannot be deleted yet.
func (e *CommandError) Unwrap() error {
	if strings.Contains(e.Reply, "still has connections") {
		return ErrServerBusy
	}
	return nil
}

// ErrServerBusy is wrapped by the error of a del server that HAProxy
// refused because the server still has connections (active or idle).
var ErrServerBusy = errors.New("server still has connections")

// Run sends one raw command line (one command, no ";") and returns
// HAProxy's reply as is. It does not interpret the reply.
func (c *Conn) Run(ctx context.Context, args ...string) (string, error) {
	line, err := commandLine(args)
	if err != nil {
		return "", err
	}
	return c.run(ctx, line)
}

// commandLine joins args into one command line. HAProxy's CLI splits
// words at spaces, commands at ";" and takes "\" as an escape, so an
// argument holding any of those, a control character or nothing is
// refused rather than sent.
func commandLine(args []string) (string, error) {
	for _, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ';' || r == '\\' }) {
			return "", fmt.Errorf("haproxy runtime API: argument %q of %q cannot be sent in a command", a, strings.Join(args, " "))
		}
	}
	return strings.Join(args, " "), nil
}

// exec runs a command and checks its reply: ok says whether a reply is
// HAProxy's success (most commands answer nothing on success).
func (c *Conn) exec(ctx context.Context, backend, server string, ok func(reply string) bool, args ...string) error {
	line, err := commandLine(args)
	if err != nil {
		return err
	}
	reply, err := c.run(ctx, line)
	if err != nil {
		return err
	}
	if !ok(reply) {
		return &CommandError{Command: line, Backend: backend, Server: server, Reply: reply}
	}
	return nil
}

func empty(reply string) bool { return strings.TrimSpace(reply) == "" }

// Info is part of "show info": the worker that answered.
type Info struct {
	PID       int    // the worker's pid: a new one after every reload or restart
	StartTime int64  // Start_time_sec
	Version   string // HAProxy's version
	Stopping  bool   // the worker is an old one finishing its connections after a reload
}

// Info runs "show info".
func (c *Conn) Info(ctx context.Context) (Info, error) {
	reply, err := c.Run(ctx, "show", "info")
	if err != nil {
		return Info{}, err
	}
	var in Info
	for _, l := range strings.Split(reply, "\n") {
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "Pid":
			in.PID, _ = strconv.Atoi(v)
		case "Start_time_sec":
			in.StartTime, _ = strconv.ParseInt(v, 10, 64)
		case "Version":
			in.Version = v
		case "Stopping":
			in.Stopping = v == "1"
		}
	}
	if in.PID == 0 {
		return Info{}, &CommandError{Command: "show info", Reply: reply}
	}
	return in, nil
}

// WaitWorker waits until the socket is served by a worker other than
// the one with pid old (0: any worker) that is not stopping, polling every
// 20ms: after a reload (SIGUSR2 to the master), it returns once the new
// worker answers, so that a push reaches it and not the old one.
func (c *Client) WaitWorker(ctx context.Context, old int) (Info, error) {
	for {
		conn, err := c.Dial(ctx)
		if err == nil {
			in, err := conn.Info(ctx)
			conn.Close()
			if err == nil && in.PID != old && !in.Stopping {
				return in, nil
			}
		}
		select {
		case <-ctx.Done():
			return Info{}, fmt.Errorf("haproxy runtime API %s: waiting for a worker other than %d: %w: %w", c.socket, old, endpoints.ErrUnavailable, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Backends runs "show backend": the names of every backend.
func (c *Conn) Backends(ctx context.Context) ([]string, error) {
	reply, err := c.Run(ctx, "show", "backend")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(reply, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# name") {
		return nil, &CommandError{Command: "show backend", Reply: reply}
	}
	var names []string
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, l)
		}
	}
	return names, nil
}

// OpState is a server's operational state (srv_op_state).
type OpState int

// The operational states.
const (
	OpStopped  OpState = 0 // down: failed its checks, or not checked yet
	OpStarting OpState = 1
	OpRunning  OpState = 2 // up
	OpStopping OpState = 3
)

// Admin state flags (srv_admin_state).
const (
	AdminForcedMaint   = 0x01 // set server state maint, or added and not enabled yet
	AdminInheritMaint  = 0x02
	AdminConfigMaint   = 0x04 // "disabled" in the configuration
	AdminResolvedMaint = 0x10
	AdminForcedDrain   = 0x08 // set server state drain
	AdminInheritDrain  = 0x20
	AdminConfigDrain   = 0x40
)

// ServerState is one line of "show servers state".
type ServerState struct {
	Backend    string
	Name       string
	ID         int // srv_id
	Addr       netip.AddrPort
	Op         OpState
	Admin      int // AdminForced* flags
	Weight     int // srv_uweight: the current user weight
	CheckState int // srv_check_state: 0x4 = health check enabled
}

// Maint reports whether the server is in any maintenance mode.
func (s ServerState) Maint() bool {
	return s.Admin&(AdminForcedMaint|AdminInheritMaint|AdminConfigMaint|AdminResolvedMaint) != 0
}

// Drain reports whether the server is draining.
func (s ServerState) Drain() bool {
	return s.Admin&(AdminForcedDrain|AdminInheritDrain|AdminConfigDrain) != 0
}

// ServersState runs "show servers state" for one backend, or for every
// backend if backend is "". An empty backend lists no line.
func (c *Conn) ServersState(ctx context.Context, backend string) ([]ServerState, error) {
	args := []string{"show", "servers", "state"}
	if backend != "" {
		args = append(args, backend)
	}
	reply, err := c.Run(ctx, args...)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(reply, "\n")
	if len(lines) < 2 || lines[0] != "1" || !strings.HasPrefix(lines[1], "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port") {
		return nil, &CommandError{Command: strings.Join(args, " "), Backend: backend, Reply: reply}
	}
	var out []ServerState
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		s, err := parseServerState(f)
		if err != nil {
			return nil, fmt.Errorf("haproxy %q: line %q: %w", strings.Join(args, " "), l, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseServerState reads the fields of one "show servers state" line
// (format version 1).
func parseServerState(f []string) (ServerState, error) {
	if len(f) < 19 {
		return ServerState{}, fmt.Errorf("%d fields, want at least 19", len(f))
	}
	num := func(i int) (int, error) { return strconv.Atoi(f[i]) }
	var s ServerState
	var err error
	s.Backend, s.Name = f[1], f[3]
	var port, op int
	for _, x := range []struct {
		i int
		p *int
	}{{2, &s.ID}, {5, &op}, {6, &s.Admin}, {7, &s.Weight}, {13, &s.CheckState}, {18, &port}} {
		if *x.p, err = num(x.i); err != nil {
			return ServerState{}, fmt.Errorf("field %d: %w", x.i+1, err)
		}
	}
	s.Op = OpState(op)
	if ip, err := netip.ParseAddr(f[4]); err == nil && port > 0 && port < 65536 {
		s.Addr = netip.AddrPortFrom(ip, uint16(port))
	}
	return s, nil
}

// Check is a server's health check: HAProxy marks a checked server up
// only after Rise passing checks, down after Fall failing ones.
type Check struct {
	Inter      time.Duration // between checks (default 2s)
	Rise, Fall int           // defaults 2 and 3
}

func (k Check) args() []string {
	inter := k.Inter
	if inter <= 0 {
		inter = 2 * time.Second
	}
	rise, fall := k.Rise, k.Fall
	if rise <= 0 {
		rise = 2
	}
	if fall <= 0 {
		fall = 3
	}
	return []string{"check", "inter", strconv.FormatInt(max(inter.Milliseconds(), 1), 10) + "ms",
		"rise", strconv.Itoa(rise), "fall", strconv.Itoa(fall)}
}

// NewServer is what AddServer creates.
type NewServer struct {
	Addr   netip.AddrPort
	ID     int    // explicit server id ("id"); 0 lets HAProxy choose
	Weight int    // 1-256; 0 is HAProxy's default (1)
	Check  *Check // nil: no health check
	Proto  string // http (default), https, grpc or grpcs: how HAProxy talks to the server
}

// protoArgs are the server keywords of an upstream protocol. TLS to a
// server is not verified (as nginx's proxy_pass https:// does not verify).
func protoArgs(proto string) ([]string, error) {
	switch proto {
	case "", "http":
		return nil, nil
	case "https":
		return []string{"ssl", "verify", "none"}, nil
	case "grpc":
		return []string{"proto", "h2"}, nil
	case "grpcs":
		return []string{"ssl", "verify", "none", "alpn", "h2"}, nil
	}
	return nil, fmt.Errorf("protocol %q: not http, https, grpc or grpcs", proto)
}

// AddServer runs "add server backend/name addr ...". HAProxy creates the
// server in maintenance; a check is created but not started (see
// EnableHealth).
func (c *Conn) AddServer(ctx context.Context, backend, name string, s NewServer) error {
	if !s.Addr.IsValid() || s.Addr.Port() == 0 {
		return fmt.Errorf("haproxy: add server %s/%s: address %q is not an IP address and port", backend, name, s.Addr)
	}
	args := []string{"add", "server", backend + "/" + name, s.Addr.String()}
	if s.ID > 0 {
		args = append(args, "id", strconv.Itoa(s.ID))
	}
	if s.Weight > 0 {
		args = append(args, "weight", strconv.Itoa(s.Weight))
	}
	if s.Check != nil {
		args = append(args, s.Check.args()...)
	}
	pa, err := protoArgs(s.Proto)
	if err != nil {
		return fmt.Errorf("haproxy: add server %s/%s: %w", backend, name, err)
	}
	args = append(args, pa...)
	return c.exec(ctx, backend, name, func(r string) bool { return r == "New server registered." }, args...)
}

// State is an administrative state for SetState.
type State string

// The states "set server ... state" takes.
const (
	StateReady State = "ready" // in rotation (once up, if checked)
	StateDrain State = "drain" // no new requests; open ones finish
	StateMaint State = "maint" // out: no new requests; open ones finish
)

// SetState runs "set server backend/name state st".
func (c *Conn) SetState(ctx context.Context, backend, name string, st State) error {
	return c.exec(ctx, backend, name, empty, "set", "server", backend+"/"+name, "state", string(st))
}

// SetAddr runs "set server backend/name addr ip port p".
func (c *Conn) SetAddr(ctx context.Context, backend, name string, a netip.AddrPort) error {
	if !a.IsValid() || a.Port() == 0 {
		return fmt.Errorf("haproxy: set server %s/%s addr: address %q is not an IP address and port", backend, name, a)
	}
	return c.exec(ctx, backend, name, func(r string) bool {
		return strings.Contains(r, "changed from") || strings.HasPrefix(r, "no need to change")
	}, "set", "server", backend+"/"+name, "addr", a.Addr().String(), "port", strconv.Itoa(int(a.Port())))
}

// SetWeight runs "set server backend/name weight w" (0-256).
func (c *Conn) SetWeight(ctx context.Context, backend, name string, w int) error {
	return c.exec(ctx, backend, name, empty, "set", "server", backend+"/"+name, "weight", strconv.Itoa(w))
}

// EnableHealth runs "enable health backend/name": the server's check
// starts (a dynamic server's check is created stopped).
func (c *Conn) EnableHealth(ctx context.Context, backend, name string) error {
	return c.exec(ctx, backend, name, empty, "enable", "health", backend+"/"+name)
}

// DelServer runs "del server backend/name". HAProxy deletes only a server
// in maintenance without connections; a server still holding some gives
// an error wrapping ErrServerBusy.
func (c *Conn) DelServer(ctx context.Context, backend, name string) error {
	return c.exec(ctx, backend, name, func(r string) bool { return r == "Server deleted." }, "del", "server", backend+"/"+name)
}

// MapEntry is one key and value of a map.
type MapEntry struct{ Key, Value string }

// ShowMap runs "show map file": the map's entries in order.
func (c *Conn) ShowMap(ctx context.Context, file string) ([]MapEntry, error) {
	reply, err := c.Run(ctx, "show", "map", file)
	if err != nil {
		return nil, err
	}
	var out []MapEntry
	for _, l := range strings.Split(reply, "\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 3 || !strings.HasPrefix(f[0], "0x") {
			return nil, &CommandError{Command: "show map " + file, Reply: reply}
		}
		out = append(out, MapEntry{Key: f[1], Value: f[2]})
	}
	return out, nil
}

// AddMap runs "add map file key value".
func (c *Conn) AddMap(ctx context.Context, file, key, value string) error {
	return c.exec(ctx, "", "", empty, "add", "map", file, key, value)
}

// SetMap runs "set map file key value".
func (c *Conn) SetMap(ctx context.Context, file, key, value string) error {
	return c.exec(ctx, "", "", empty, "set", "map", file, key, value)
}

// DelMap runs "del map file key".
func (c *Conn) DelMap(ctx context.Context, file, key string) error {
	return c.exec(ctx, "", "", empty, "del", "map", file, key)
}
