package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/internal/atomicfile"
	"github.com/berthd/berth/records"
)

// NamePrefix starts the name of every server the Sink adds or the
// template writes (endpoints.Server.Name). The Sink changes and deletes
// only servers whose name starts with it: another server written in the
// configuration is left alone.
const NamePrefix = endpoints.ServerNamePrefix

// Sink is an endpoints.Sink for HAProxy: it applies a Set through the
// Runtime API, backend by backend, with no reload. A Push reads HAProxy's
// current servers ("show servers state") of the backends whose upstreams
// changed since the last push, or of every backend for a new worker (a
// restart or reload: the configuration's servers only), after a failure,
// and at a slow resync (WithResync); an unchanged set on the same worker
// costs one "show info". So a restarted or reloaded HAProxy gets
// everything again from one push. Servers the template wrote into the
// configuration carry the same names (endpoints.Server.Name) and are
// taken as they are: a reload starts with them, and is not doubled.
//
// For each upstream the backend of the same name must exist (the template
// declares it, with no servers). A server the Set has and HAProxy does not
// is added in maintenance with an explicit id (with TLS or HTTP/2 as the
// upstream's protocol asks, and the Sink's health check, started), then
// set ready (a checked server gets requests once its check passes) or
// drain; a changed address or weight is set in place; a draining server
// is set to drain; a server HAProxy has and the Set does not is set to
// maintenance (open requests finish) and deleted once it has no
// connections left (at once, or by a later push). Plain hosts go to the
// host map. After a reload (WithConfigFile) a push waits for the new
// worker.
//
// Errors: an unreachable socket, or an old worker stopping after a
// reload, gives an error wrapping endpoints.ErrUnavailable; a command
// HAProxy refuses, or a backend the configuration lacks, gives another
// error (the caller renders and reloads), after the rest of the Set has
// been applied. A command HAProxy refuses for one server (add, set) is
// not: that server is reported (command, server, reason) and left out,
// and the others stay live. With WithConfigFile a missing backend is first waited for
// (up to 15s): a set is often pushed before the render that adds its new
// upstreams, and is then applied to the worker that has them. A server whose address HAProxy cannot take (invalid, port
// 0, unspecified, multicast) is left out and logged.
type Sink struct {
	client  *Client
	check   *Check
	hostMap string
	config  string
	delWait time.Duration
	resync  time.Duration
	log     *slog.Logger

	mu          sync.Mutex
	lastPID     int         // the worker of the last push
	lastConfig  os.FileInfo // the configuration file at the last successful push
	lastSet     endpoints.Set
	lastOK      bool              // lastSet is applied in full to lastPID's worker, nothing left to delete
	lastFull    time.Time         // the last push that read every backend's servers
	leftOut     map[string]string // server → why, of the servers HAProxy refused (each reported once)
	conn        *Conn             // kept between pushes; nil when closed
	backends    map[string]bool   // the backends of worker backendsPID
	backendsPID int
}

// worker returns a connection to the current worker and its info: the
// connection kept from the last push (no dial, no "prompt": two round
// trips fewer per push), or a new one when there is none, it broke (an
// idle timeout), or it reaches a worker that stops after a reload.
func (s *Sink) worker(ctx context.Context) (*Conn, Info, error) {
	for {
		fresh := s.conn == nil
		if fresh {
			c, err := s.client.Dial(ctx)
			if err != nil {
				return nil, Info{}, err
			}
			s.conn = c
		}
		info, err := s.conn.Info(ctx)
		switch {
		case err == nil && !info.Stopping:
			return s.conn, info, nil
		case err == nil && fresh: // an old worker after a reload: the new one gets the set
			err = fmt.Errorf("haproxy worker %d is stopping after a reload: %w", info.PID, endpoints.ErrUnavailable)
		}
		s.closeConn()
		if fresh || ctx.Err() != nil {
			return nil, Info{}, err
		}
	}
}

// closeConn closes the kept connection.
func (s *Sink) closeConn() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// dropBroken closes the kept connection if a command broke it.
func (s *Sink) dropBroken() {
	if s.conn != nil && s.conn.broken != nil {
		s.closeConn()
	}
}

// Close closes the connection the Sink keeps to HAProxy between pushes.
// A later Push opens a new one.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeConn()
	return nil
}

// backendsOf returns the backends of worker pid: read once per worker
// (the Runtime API cannot add one; a new configuration is a new worker).
func (s *Sink) backendsOf(ctx context.Context, c *Conn, pid int) (map[string]bool, error) {
	if s.backends != nil && s.backendsPID == pid {
		return s.backends, nil
	}
	names, err := c.Backends(ctx)
	if err != nil {
		return nil, err
	}
	s.backends, s.backendsPID = map[string]bool{}, pid
	for _, b := range names {
		s.backends[b] = true
	}
	return s.backends, nil
}

// The files of a live directory: HAProxy's admin socket (the template's
// "stats socket") and the host map (the template's map()).
const (
	SocketFile = "haproxy.sock"
	MapFile    = "hosts.map"
)

// Option configures a Sink.
type Option func(*Sink)

// WithCheck gives every server the Sink adds a health check: a new
// server gets requests only once it passes. The template's backends
// should have no checks of their own (dynamic servers do not inherit
// default-server settings).
func WithCheck(c Check) Option { return func(s *Sink) { s.check = &c } }

// WithConfigFile names HAProxy's configuration file (the template's
// dest). When it has been replaced since the last push (or since New, for
// the first push: a render, and so a reload, happened), a Push first waits
// up to 10s for a new worker, so
// that the set reaches the worker with the new configuration rather than
// the old one finishing its connections (which has no new backends and
// would take the set only to exit).
func WithConfigFile(path string) Option { return func(s *Sink) { s.config = path } }

// WithDeleteWait sets how long a Push waits for removed servers to finish
// their open requests before deleting them. The default, 0, tries once:
// a server still busy stays in maintenance (no new requests) and is
// deleted by a later Push (endpoints.Pusher pushes again every interval),
// so that a push is never held up by a slow request.
func WithDeleteWait(d time.Duration) Option { return func(s *Sink) { s.delWait = d } }

// WithResync sets how often a push of an unchanged set reads every
// backend's servers again and repairs what changed behind the Sink's back
// (default 30s). In between, such a push checks only that the same worker
// runs (a new one gets every server at once).
func WithResync(d time.Duration) Option { return func(s *Sink) { s.resync = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Sink) { s.log = l } }

// WithClientOptions configures the Runtime API client.
func WithClientOptions(opts ...ClientOption) Option {
	return func(s *Sink) { s.client = NewClient(s.client.socket, opts...) }
}

// New is a Sink for the HAProxy whose live directory is dir (the
// template's BERTH_LIVE_DIR): HAProxy opens its admin socket there
// (SocketFile), and the Sink keeps the host map there (MapFile: host →
// backend, one line for every upstream at path "/" of a host name without
// wildcard or regular expression), written on every push so that a
// restart reads the current hosts, and applied to the running HAProxy
// with add/set/del map. New makes dir (mode 0700: only its owner reaches
// the admin socket) and an empty map if there is none: HAProxy refuses a
// configuration naming a missing map.
func New(dir string, opts ...Option) (*Sink, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("haproxy live directory %q: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	s := &Sink{client: NewClient(filepath.Join(dir, SocketFile)), hostMap: filepath.Join(dir, MapFile), resync: 30 * time.Second, log: slog.Default(), leftOut: map[string]string{}}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("haproxy live directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("haproxy live directory: %w", err)
	}
	f, err := os.OpenFile(s.hostMap, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("haproxy host map: %w", err)
	}
	f.Close()
	if s.config != "" {
		// What HAProxy runs now: the configuration as it is, and its worker
		// (if it is up), so that the first push after a render and reload
		// waits for the new worker too.
		s.lastConfig, _ = os.Stat(s.config)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if c, err := s.client.Dial(ctx); err == nil {
			if in, err := c.Info(ctx); err == nil {
				s.lastPID = in.PID
			}
			c.Close()
		}
	}
	return s, nil
}

var _ endpoints.Sink = (*Sink)(nil)

// Push applies set to HAProxy. It is safe to call again after an error
// and concurrently (pushes are serialised).
func (s *Sink) Push(ctx context.Context, set endpoints.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.push(ctx, set, true)
}

// push is one Push; wait says whether a set with upstreams HAProxy has no
// backend for may wait for the render that adds them (once).
func (s *Sink) push(ctx context.Context, set endpoints.Set, wait bool) error {
	wasOK := s.lastOK
	s.lastOK = false
	cfg := s.awaitReload(ctx)
	defer s.dropBroken()
	c, info, err := s.worker(ctx)
	if err != nil {
		return err
	}
	s.lastConfig = cfg // this worker runs the configuration as it is now
	if wasOK && info.PID == s.lastPID && set.Equal(s.lastSet) && time.Since(s.lastFull) < s.resync {
		s.lastSet, s.lastOK = set, true // nothing changed on either side
		return nil
	}
	scope := s.scope(set, wasOK && info.PID == s.lastPID)
	if scope == nil {
		s.lastFull = time.Now()
	}
	if info.PID != s.lastPID {
		if s.lastPID != 0 {
			s.log.Info("haproxy: new worker, pushing every endpoint", "pid", info.PID, "previous", s.lastPID, "revision", set.Revision)
		}
		s.lastPID = info.PID
	}
	backends, err := s.backendsOf(ctx, c, info.PID)
	if err != nil {
		return err
	}
	if wait && s.config != "" && slices.ContainsFunc(set.Upstreams, func(u endpoints.Upstream) bool { return !backends[u.Name] }) {
		// A new upstream is structure: berth renders it and reloads
		// HAProxy (a set is often pushed before its render is done). Wait
		// for that, then push to the new worker at once.
		if s.awaitConfig(ctx, cfg) {
			return s.push(ctx, set, false)
		}
		if c, _, err = s.worker(ctx); err != nil {
			return err
		}
	}
	var states []ServerState
	if scope == nil {
		states, err = c.ServersState(ctx, "")
	} else {
		for _, b := range slices.Sorted(maps.Keys(scope)) {
			if backends[b] && err == nil {
				var st []ServerState
				st, err = c.ServersState(ctx, b)
				states = append(states, st...)
			}
		}
	}
	if err != nil {
		return err
	}
	have := map[string]map[string]ServerState{} // backend → server name → state
	ids := map[string]map[int]bool{}            // backend → server ids in use
	for _, st := range states {
		if have[st.Backend] == nil {
			have[st.Backend], ids[st.Backend] = map[string]ServerState{}, map[int]bool{}
		}
		have[st.Backend][st.Name] = st
		ids[st.Backend][st.ID] = true
	}

	var refused []error
	partial := false                     // a server was left out: try it again at the next push
	want := map[string]map[string]bool{} // backend → our server names in the set
	for _, u := range set.Upstreams {
		if scope != nil && !scope[u.Name] {
			continue // as applied by the last push
		}
		if !backends[u.Name] {
			refused = append(refused, fmt.Errorf("haproxy has no backend %q (upstream of %s%s): its configuration is not the rendered one", u.Name, records.Truncate(u.Host), records.Truncate(u.Path)))
			continue
		}
		want[u.Name] = map[string]bool{}
		if ids[u.Name] == nil {
			ids[u.Name] = map[int]bool{}
		}
		for _, srv := range u.Servers {
			if why := badAddr(srv.Addr); why != "" {
				s.log.Warn("haproxy: server left out", "backend", u.Name, "server", records.Truncate(srv.ID), "addr", srv.Addr.String(), "reason", why)
				continue
			}
			name := srv.Name()
			cur, ok := have[u.Name][name]
			err := s.apply(ctx, c, u, name, srv, cur, ok, ids[u.Name])
			var ce *CommandError
			switch {
			case err == nil:
				want[u.Name][name] = true
				delete(s.leftOut, u.Name+"/"+name)
			case errors.Is(err, endpoints.ErrUnavailable):
				return err
			case errors.As(err, &ce):
				// This server only: left out (what was added of it is
				// removed below), reported once per reason; the others
				// stay live.
				partial = true
				if key := u.Name + "/" + name; s.leftOut[key] != ce.Reply {
					s.leftOut[key] = ce.Reply
					s.log.Error("haproxy refused a server; it is left out, the others stay live", "backend", u.Name, "server", name, "addr", srv.Addr.String(), "command", ce.Command, "reason", strings.TrimSpace(ce.Reply))
				}
			default:
				refused = append(refused, err)
			}
		}
	}

	// Removed servers: maintenance (no new requests), then delete once idle.
	var busy [][2]string
	for _, b := range slices.Sorted(maps.Keys(have)) {
		for _, name := range slices.Sorted(maps.Keys(have[b])) {
			if !strings.HasPrefix(name, NamePrefix) || want[b][name] {
				continue
			}
			if !have[b][name].Maint() {
				if err := c.SetState(ctx, b, name, StateMaint); err != nil {
					if errors.Is(err, endpoints.ErrUnavailable) {
						return err
					}
					refused = append(refused, err)
					continue
				}
			}
			busy = append(busy, [2]string{b, name})
		}
	}
	left, err := s.deleteIdle(ctx, c, busy)
	if err != nil {
		if errors.Is(err, endpoints.ErrUnavailable) {
			return err
		}
		refused = append(refused, err)
	}

	if scope == nil || !slices.Equal(HostMapEntries(set), HostMapEntries(s.lastSet)) {
		if err := s.syncHostMap(ctx, c, set, backends); err != nil {
			if errors.Is(err, endpoints.ErrUnavailable) {
				return err
			}
			refused = append(refused, err)
		}
	}
	s.lastSet, s.lastOK = set, len(refused) == 0 && left == 0 && !partial
	return errors.Join(refused...)
}

// scope is the backends a push must read and apply: nil for all of them
// (a new worker, after a failure, or the same set again: a periodic push
// checks everything against HAProxy's state), else those whose upstream
// changed since the last push, which was applied in full to this worker.
func (s *Sink) scope(set endpoints.Set, sameWorker bool) map[string]bool {
	if !sameWorker || set.Equal(s.lastSet) {
		return nil
	}
	changed := map[string]bool{}
	for _, u := range set.Upstreams {
		if old, ok := s.lastSet.Upstream(u.Name); !ok || !old.Equal(u) {
			changed[u.Name] = true
		}
	}
	for _, u := range s.lastSet.Upstreams {
		if _, ok := set.Upstream(u.Name); !ok {
			changed[u.Name] = true
		}
	}
	return changed
}

// awaitReload waits for a new worker when the configuration file was
// replaced since the last successful push, and returns the file's state.
func (s *Sink) awaitReload(ctx context.Context) os.FileInfo {
	if s.config == "" {
		return nil
	}
	fi, err := os.Stat(s.config)
	if err != nil {
		return nil
	}
	if s.lastPID == 0 || s.lastConfig != nil && os.SameFile(fi, s.lastConfig) && fi.ModTime().Equal(s.lastConfig.ModTime()) {
		return fi // no worker known to be older than the file, or the file is the one it runs
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in, err := s.client.WaitWorker(wctx, s.lastPID)
	switch {
	case err == nil:
		s.log.Debug("haproxy: new worker after a reload", "worker", in.PID, "previous", s.lastPID)
	case ctx.Err() == nil:
		s.log.Warn("haproxy: configuration replaced but no new worker came; pushing to the current one", "config", s.config, "worker", s.lastPID)
	}
	return fi
}

// awaitConfig waits up to 15s for the configuration file to be replaced
// (since is what it was) and reports whether it was.
func (s *Sink) awaitConfig(ctx context.Context, since os.FileInfo) bool {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(s.config); err == nil && (since == nil || !os.SameFile(fi, since) || !fi.ModTime().Equal(since.ModTime())) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return false
}

// apply brings one server of u's backend to srv: added if HAProxy does not
// have it (ok false), else its address, weight and state set where they
// differ.
func (s *Sink) apply(ctx context.Context, c *Conn, u endpoints.Upstream, name string, srv endpoints.Server, cur ServerState, ok bool, ids map[int]bool) error {
	b := u.Name
	weight := min(max(srv.Weight, 1), records.MaxWeight)
	state := StateReady
	if srv.Draining {
		state = StateDrain
	}
	if !ok {
		id := pickID(name, ids)
		if err := c.AddServer(ctx, b, name, NewServer{Addr: srv.Addr, ID: id, Weight: weight, Check: s.check, Proto: u.Proto}); err != nil {
			return err
		}
		ids[id] = true
		if s.check != nil {
			if err := c.EnableHealth(ctx, b, name); err != nil {
				return err
			}
		}
		return c.SetState(ctx, b, name, state)
	}
	if cur.Addr != srv.Addr {
		if err := c.SetAddr(ctx, b, name, srv.Addr); err != nil {
			return err
		}
	}
	setState := cur.Maint() || cur.Drain() != srv.Draining
	if setState && srv.Draining { // before the weight: a server the file wrote with weight 0 gets no request meanwhile
		if err := c.SetState(ctx, b, name, state); err != nil {
			return err
		}
		setState = false
	}
	if cur.Weight != weight {
		if err := c.SetWeight(ctx, b, name, weight); err != nil {
			return err
		}
	}
	if setState {
		return c.SetState(ctx, b, name, state)
	}
	return nil
}

// deleteIdle deletes servers (already in maintenance), waiting up to the
// delete wait for those that still have connections.
func (s *Sink) deleteIdle(ctx context.Context, c *Conn, servers [][2]string) (left int, err error) {
	deadline := time.Now().Add(s.delWait)
	for len(servers) > 0 {
		var still [][2]string
		for _, bs := range servers {
			err := c.DelServer(ctx, bs[0], bs[1])
			switch {
			case err == nil:
			case errors.Is(err, ErrServerBusy):
				still = append(still, bs)
			case errors.As(err, new(*CommandError)):
				// In maintenance already: it gets no requests; reported
				// once, tried again at the next push.
				left++
				if key := bs[0] + "/" + bs[1]; s.leftOut[key] != err.Error() {
					s.leftOut[key] = err.Error()
					s.log.Error("haproxy refused to delete a server; it stays in maintenance", "backend", bs[0], "server", bs[1], "err", err)
				}
			default:
				return left + len(servers), err
			}
		}
		servers = still
		if len(servers) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return left + len(servers), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, bs := range servers {
		s.log.Info("haproxy: server in maintenance still has connections; deleted on a later push", "backend", bs[0], "server", bs[1])
	}
	return left + len(servers), nil
}

// HostMapEntries are the host map's lines for set: host → backend for
// every upstream at path "/" whose host is a plain name (no wildcard, no
// regular expression), sorted by host. The template routes the other
// upstreams with rules of their own.
func HostMapEntries(set endpoints.Set) []MapEntry {
	var out []MapEntry
	for _, u := range set.Upstreams {
		if PlainHost(u.Host) && u.Path == "/" {
			out = append(out, MapEntry{Key: u.Host, Value: u.Name})
		}
	}
	slices.SortFunc(out, func(a, b MapEntry) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// PlainHost reports whether host is routed through the host map: a name
// without wildcard ("*", a leading ".") or regular expression ("~").
func PlainHost(host string) bool {
	return host != "" && !strings.HasPrefix(host, "~") && !strings.HasPrefix(host, ".") && !strings.Contains(host, "*")
}

// syncHostMap writes the host map file and applies its changes to the
// running HAProxy's map.
func (s *Sink) syncHostMap(ctx context.Context, c *Conn, set endpoints.Set, backends map[string]bool) error {
	entries := HostMapEntries(set)
	entries = slices.DeleteFunc(entries, func(e MapEntry) bool { return !backends[e.Value] })
	var file bytes.Buffer
	for _, e := range entries {
		fmt.Fprintf(&file, "%s %s\n", e.Key, e.Value)
	}
	if err := atomicfile.WriteIfChanged(s.hostMap, file.Bytes(), 0o644); err != nil {
		return fmt.Errorf("haproxy host map: %w", err)
	}
	live, err := c.ShowMap(ctx, s.hostMap)
	var refused *CommandError
	if errors.As(err, &refused) && strings.HasPrefix(refused.Reply, "Unknown map identifier") {
		// The running configuration routes without the map (the template's
		// fallback form, servers in the file): nothing to apply live; the
		// file is ready for the live form.
		return nil
	}
	if err != nil {
		return err
	}
	cur := map[string]string{}
	for _, e := range live {
		cur[e.Key] = e.Value
	}
	var errs []error
	wantKeys := map[string]bool{}
	for _, e := range entries {
		wantKeys[e.Key] = true
		v, ok := cur[e.Key]
		switch {
		case !ok:
			err = c.AddMap(ctx, s.hostMap, e.Key, e.Value)
		case v != e.Value:
			err = c.SetMap(ctx, s.hostMap, e.Key, e.Value)
		default:
			continue
		}
		if err != nil {
			if errors.Is(err, endpoints.ErrUnavailable) {
				return err
			}
			errs = append(errs, err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if !wantKeys[k] {
			if err := c.DelMap(ctx, s.hostMap, k); err != nil {
				if errors.Is(err, endpoints.ErrUnavailable) {
					return err
				}
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// badAddr says why HAProxy cannot take a, or "".
func badAddr(a netip.AddrPort) string {
	switch {
	case !a.IsValid():
		return "not an IP address and port"
	case a.Port() == 0:
		return "port 0"
	case a.Addr().IsUnspecified():
		return "unspecified address"
	case a.Addr().IsMulticast():
		return "multicast address"
	case a.Addr().Zone() != "":
		return "address with a zone"
	}
	return ""
}

// ServerName is the HAProxy server name of an endpoint ID:
// endpoints.Server.Name, the name the template writes too.
func ServerName(id string) string { return endpoints.Server{ID: id}.Name() }

// pickID is the explicit server id of a new server: derived from its name
// (so a server keeps its id across HAProxy restarts, whatever the order
// of the pushes), the next free one on a collision.
func pickID(name string, used map[int]bool) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	id := 1000 + int(h.Sum32()%1_000_000_000)
	for used[id] {
		id++
	}
	return id
}
