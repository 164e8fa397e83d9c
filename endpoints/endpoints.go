package endpoints

import (
	"cmp"
	"context"
	"crypto/sha1" //nolint:gosec // a name suffix, not a security boundary
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// Server is one endpoint of an upstream.
type Server struct {
	ID       string         // stable: the record's id (container id) + "/" + port; unique in its upstream
	Addr     netip.AddrPort // validated; records whose IP/port do not parse are left out and reported
	Weight   int            // >= 1
	Draining bool           // no new requests; open ones finish
}

// Upstream is one named group of servers. Name is the same string the
// shipped templates print as the upstream / backend name (one function,
// UpstreamName, used by Build and exposed to templates).
type Upstream struct {
	Name    string
	Servers []Server // sorted by ID

	// Config is the servers a live template writes into the proxy's file
	// (so that a reload starts with them, not with empty upstreams): the
	// upstream's servers as of the last change of the set's structure
	// (WithConfigServers), so that instances coming and going leave the
	// file byte-identical. Without WithConfigServers it is Servers. A
	// sink applies Servers; Equal ignores Config.
	Config []Server

	// Where the upstream is served: what a template needs for the
	// structure around it. Host is lower case unless it is a regular
	// expression ("~..."); Proto is http, https, grpc or grpcs.
	Host, Path, Proto string
}

// Set is the whole endpoint set of one template at one store revision.
type Set struct {
	Revision store.Revision
	// Generation orders the sets of one template: a set built from newer
	// source data has a greater one (the sum of its sources' generations,
	// which only grow). Revisions cannot order them: docker-gen sources
	// have none (0).
	Generation uint64
	Upstreams  []Upstream // sorted by Name
}

// Sink applies endpoint sets to a running proxy without reloading it.
// Push is given the full Set every time (a sink diffs against what it
// last applied, and re-pushes everything when it detects a new proxy
// generation). It must be idempotent and safe to call again after an error.
// An error wrapping ErrUnavailable means the proxy is down: the caller keeps
// the set and pushes again later (never lost). Any other error means the
// proxy refused: the caller falls back to render+check+reload and logs why.
type Sink interface {
	Push(ctx context.Context, s Set) error
}

// ErrUnavailable is wrapped by a Sink's error when the proxy cannot be
// reached (down, restarting): the set is pushed again later.
var ErrUnavailable = errors.New("proxy unavailable")

// Protocols are the VIRTUAL_PROTO values the shipped templates serve.
var protocols = []string{"http", "https", "grpc", "grpcs"}

// Equal reports whether s and o have the same upstreams and servers (the
// revision, generation and config servers aside): a set equal to the last
// one applied needs no push.
func (s Set) Equal(o Set) bool {
	return slices.EqualFunc(s.Upstreams, o.Upstreams, Upstream.Equal)
}

// Equal reports whether u and o are the same upstream with the same
// servers (Config aside).
func (u Upstream) Equal(o Upstream) bool {
	return u.sameStructure(o) && slices.Equal(u.Servers, o.Servers)
}

// sameStructure reports whether u and o differ at most in their servers.
func (u Upstream) sameStructure(o Upstream) bool {
	return u.Name == o.Name && u.Host == o.Host && u.Path == o.Path && u.Proto == o.Proto
}

// SameStructure reports whether s and o have the same upstreams (names,
// hosts, paths, protocols), whatever their servers: what a live
// template's file carries.
func (s Set) SameStructure(o Set) bool {
	return slices.EqualFunc(s.Upstreams, o.Upstreams, Upstream.sameStructure)
}

// Upstream returns the upstream called name, and whether there is one.
func (s Set) Upstream(name string) (Upstream, bool) {
	i, ok := slices.BinarySearchFunc(s.Upstreams, name, func(u Upstream, n string) int { return strings.Compare(u.Name, n) })
	if !ok {
		return Upstream{}, false
	}
	return s.Upstreams[i], true
}

// UpstreamName is the name of the upstream serving host (as grouped: lower
// case unless a regular expression) and path: the host with every
// character but letters, digits, '_', '.' and '-' replaced by '_', then,
// when something was replaced, "-" and 8 hex digits of the host's SHA-1,
// and for a path other than "/", "-" and 8 hex digits of the path's SHA-1.
// So two locations never share a name, and every name is one bare token
// in nginx and HAProxy configurations.
func UpstreamName(host, path string) string {
	name := host
	if strings.IndexFunc(host, unsafeInName) >= 0 {
		name = strings.Map(func(r rune) rune {
			if unsafeInName(r) {
				return '_'
			}
			return r
		}, host) + "-" + shortHash(host)
	}
	if path != "/" {
		name += "-" + shortHash(path)
	}
	return name
}

// unsafeInName reports whether r is replaced in an upstream name.
func unsafeInName(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
}

// ServerNamePrefix starts every Server.Name: a proxy's sink changes and
// deletes only the servers whose name starts with it.
const ServerNamePrefix = "berth-"

// conventionalID is the usual server ID: "<container id>/<port>".
var conventionalID = regexp.MustCompile(`^([A-Za-z0-9_.-]+)/([0-9]+)$`)

// Name is the server's name in a proxy configuration (a bare token), the
// same in a rendered file and for a sink: ServerNamePrefix, then for the
// usual "<container id>/<port>" the id, "-" and the port; for any other
// ID its characters but letters, digits, '_', '.' and '-' replaced by "_",
// "-x" and 8 hex digits of the ID's SHA-1. Distinct IDs get distinct
// names.
func (s Server) Name() string {
	if m := conventionalID.FindStringSubmatch(s.ID); m != nil {
		return ServerNamePrefix + m[1] + "-" + m[2]
	}
	return ServerNamePrefix + strings.Map(func(r rune) rune {
		if unsafeInName(r) {
			return '_'
		}
		return r
	}, s.ID) + "-x" + shortHash(s.ID)
}

func shortHash(s string) string {
	h := sha1.Sum([]byte(s)) //nolint:gosec // see the import
	return hex.EncodeToString(h[:])[:8]
}

// Option configures Build.
type Option func(*buildOptions)

type buildOptions struct {
	rev    store.Revision
	gen    uint64
	config *Set
}

// AtRevision sets the Set's revision.
func AtRevision(rev store.Revision) Option { return func(o *buildOptions) { o.rev = rev } }

// AtGeneration sets the Set's generation.
func AtGeneration(gen uint64) Option { return func(o *buildOptions) { o.gen = gen } }

// WithConfigServers gives the set the last render wrote (its Config): when
// the new set has the same structure (SameStructure), every upstream's
// Config is prev's, else it is the upstream's Servers (the file changes
// and the proxy reloads anyway: it then starts with the current servers).
func WithConfigServers(prev Set) Option { return func(o *buildOptions) { o.config = &prev } }

// Build groups instances into upstreams the way the shipped nginx templates
// group them (nginx-proxy style): an instance that is running or draining,
// with VIRTUAL_HOST (a comma list), an IP and a port, is a server of the
// upstream of each (host, VIRTUAL_PATH) pair (the path "/" by default).
// Draining instances are servers with Draining set; a weight of 0 (or none:
// records written by hand often have none) counts as 1. The first instance of an upstream (in the order given) fixes its
// protocol (VIRTUAL_PROTO, default http); a later one asking for another is
// left out. Instances are given in the order templates see them: service
// by service in name order, each service's instances by host and id.
//
// An instance with an IP, port, path, protocol or weight that does not
// pass the registrar's checks is left out, a host name that does not is
// left out of its instance's list; each is reported as one error naming
// the container and the field, and everything else is built as usual.
func Build(instances []records.Instance, opts ...Option) (Set, []error) {
	return build(instances, partOf, opts)
}

// part is one instance's share of a set, a function of the fields of it
// that Build reads (partKey): whether it is proxied at all, its server,
// path and protocol, and the upstream each of its host names joins; or
// why it is left out.
type part struct {
	skip        bool  // not proxied (not running or draining, no host, IP or port): nothing to report
	err         error // left out, with why
	srv         Server
	path, proto string
	hosts       []hostPart
}

type hostPart struct {
	host, name string // as grouped, and UpstreamName(host, path)
	err        error  // the host name is left out, with why
}

// who names an instance in Build's errors.
func who(in records.Instance) string {
	return fmt.Sprintf("container %q (%s)", records.Truncate(in.Name), records.Truncate(in.ID))
}

// partOf validates one instance for Build.
func partOf(in records.Instance) *part {
	if in.State != records.StateRunning && in.State != records.StateDraining {
		return &part{skip: true}
	}
	if in.Env["VIRTUAL_HOST"] == "" || in.IP == "" || in.Port == 0 {
		return &part{skip: true} // not proxied (no network, no port): nothing to report
	}
	srv, path, proto, err := server(in)
	if err != nil {
		return &part{err: fmt.Errorf("%s is left out: %w", who(in), err)}
	}
	p := &part{srv: srv, path: path, proto: proto}
	for _, h := range records.SplitHosts(in.Env["VIRTUAL_HOST"]) {
		if err := records.CheckHost(h); err != nil {
			p.hosts = append(p.hosts, hostPart{err: fmt.Errorf("%s: VIRTUAL_HOST %q is left out: %w", who(in), records.Truncate(h), err)})
			continue
		}
		if !strings.HasPrefix(h, "~") {
			h = strings.ToLower(h)
		}
		p.hosts = append(p.hosts, hostPart{host: h, name: UpstreamName(h, path)})
	}
	return p
}

// build is Build with each instance's part from partOf (validating it, or
// a Builder's memo of that).
func build(instances []records.Instance, partOf func(records.Instance) *part, opts []Option) (Set, []error) {
	var o buildOptions
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	ups := map[string]*Upstream{}
	for _, in := range instances {
		p := partOf(in)
		switch {
		case p.skip:
			continue
		case p.err != nil:
			errs = append(errs, p.err)
			continue
		}
		for _, hp := range p.hosts {
			if hp.err != nil {
				errs = append(errs, hp.err)
				continue
			}
			u, ok := ups[hp.name]
			if !ok {
				u = &Upstream{Name: hp.name, Host: hp.host, Path: p.path, Proto: p.proto}
				ups[hp.name] = u
			}
			if u.Proto != p.proto {
				errs = append(errs, fmt.Errorf("%s is left out of %s%s: it is served over %s, VIRTUAL_PROTO asks for %s", who(in), hp.host, p.path, u.Proto, p.proto))
				continue
			}
			if slices.ContainsFunc(u.Servers, func(s Server) bool { return s.ID == p.srv.ID }) {
				continue // the same record twice
			}
			u.Servers = append(u.Servers, p.srv)
		}
	}
	names := slices.Sorted(maps.Keys(ups))
	set := Set{Revision: o.rev, Generation: o.gen, Upstreams: make([]Upstream, 0, len(ups))}
	for _, name := range names {
		u := ups[name]
		slices.SortFunc(u.Servers, func(a, b Server) int { return strings.Compare(a.ID, b.ID) })
		u.Config = u.Servers
		set.Upstreams = append(set.Upstreams, *u)
	}
	if o.config != nil && set.SameStructure(*o.config) {
		for i := range set.Upstreams {
			set.Upstreams[i].Config = o.config.Upstreams[i].Config
		}
	}
	return set, errs
}

// Instances lists the instances of .Services (service → instances, as
// native templates see it) in the order Build takes them: service by
// service in name order.
func Instances(services map[string][]records.Instance) []records.Instance {
	var all []records.Instance
	for _, name := range slices.Sorted(maps.Keys(services)) {
		all = append(all, services[name]...)
	}
	return all
}

// server checks one instance's routing fields and returns its server.
func server(in records.Instance) (Server, string, string, error) {
	if err := records.CheckIP(in.IP); err != nil {
		return Server{}, "", "", fmt.Errorf("IP %q: %w", records.Truncate(in.IP), err)
	}
	ip := netip.MustParseAddr(in.IP)
	if in.Port < 1 || in.Port > 65535 {
		return Server{}, "", "", fmt.Errorf("port %d: not a port (1-65535)", in.Port)
	}
	if in.Weight < 0 || in.Weight > records.MaxWeight {
		return Server{}, "", "", fmt.Errorf("weight %d: not a weight (0-%d)", in.Weight, records.MaxWeight)
	}
	if err := records.CheckID(in.ID); err != nil {
		return Server{}, "", "", fmt.Errorf("id: %w", err)
	}
	path := cmp.Or(in.Env["VIRTUAL_PATH"], "/")
	if err := records.CheckPath(path); err != nil {
		return Server{}, "", "", fmt.Errorf("VIRTUAL_PATH %q: %w", records.Truncate(path), err)
	}
	proto := strings.ToLower(cmp.Or(in.Env["VIRTUAL_PROTO"], "http"))
	if !slices.Contains(protocols, proto) {
		return Server{}, "", "", fmt.Errorf("VIRTUAL_PROTO %q: not served by the shipped templates (%s)", records.Truncate(proto), strings.Join(protocols, ", "))
	}
	s := Server{
		ID:       in.ID + "/" + strconv.Itoa(in.Port),
		Addr:     netip.AddrPortFrom(ip.Unmap(), uint16(in.Port)),
		Weight:   max(in.Weight, 1),
		Draining: in.State == records.StateDraining,
	}
	return s, path, proto, nil
}
