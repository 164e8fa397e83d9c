package registrar

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// Sink is a catalog the registrar publishes this host's containers to,
// besides (or instead of) the store's records: package consulcatalog is
// one. The registrar calls it from its Run goroutine, with the same
// lifecycle as the records (validation, health, drain, reconcile).
//
// Set and Replace must not block on I/O: a sink takes the new desired
// state, applies it on its own goroutine, and retries what failed with a
// backoff until it is applied (a sink reports its own errors).
type Sink interface {
	// Set makes regs the registrations of container id (none: it has
	// none any more).
	Set(id string, regs []Registration)
	// Replace makes all (container id → registrations) the whole of this
	// host's registrations: the sink registers what it lacks and removes
	// this host's registrations that all does not hold (orphans of a
	// crashed daemon, containers removed while it was down). Called at
	// start and every resync.
	Replace(all map[string][]Registration)
}

// Registration is one published port of a running container, as a catalog
// registers it: every value has been validated like the records' are.
type Registration struct {
	Container     string // the container's id
	ContainerName string
	Image         string
	Service       string // the record's service name (SERVICE_<port>_NAME, else the container's)
	Port          int    // the container port
	Proto         string // "tcp" or "udp"
	HostPort      int
	// Address is where other hosts reach the port: the advertise address,
	// else the host IP it is published on ("": on every address; a catalog
	// takes its node's address).
	Address string
	// CheckAddr is host:port where a check on this host reaches the port.
	CheckAddr string
	Tags      []string
	// Attrs are the container's other SERVICE_<KEY>=value (and
	// SERVICE_<port>_<KEY>) settings, key lower-cased: registrator's
	// attributes.
	Attrs    map[string]string
	Health   records.Health // the container's health ("none": it has no health check)
	Draining bool           // stopping: a catalog takes it out of rotation (maintenance)
	Checks   []Check        // from SERVICE_CHECK_* (and SERVICE_<port>_CHECK_*)
}

// Check is a check a container declares with registrator's labels.
type Check struct {
	Kind     string // "http", "https" or "tcp"
	Target   string // the URL (http, https) or host:port (tcp)
	Interval time.Duration
	Timeout  time.Duration // 0: the catalog's default
}

// Defaults and bounds of SERVICE_CHECK_INTERVAL and _TIMEOUT.
const (
	DefaultCheckInterval = 10 * time.Second
	minCheckInterval     = time.Second
	maxCheckInterval     = time.Hour
)

// registrationsAt computes the catalog registrations of c on a host
// reachable at advertise: one per published port, while c runs and is not
// ignored, whatever its health (a catalog shows an unhealthy container as
// critical rather than hiding it). Metadata is cleaned as for the records;
// check labels that do not parse are left out and reported in warnings
// and invalid.
func registrationsAt(advertise string, c runtime.Container) (regs []Registration, warnings []string, invalid []records.FieldError) {
	switch Skipped(c) {
	case SkipNotRunning, SkipIgnored:
		return nil, nil, nil
	}
	if records.CheckID(c.ID) != nil {
		return nil, nil, nil // recordsAt reports it
	}
	m := clean(c)
	env := m.env
	bad := func(field, value string, err error) {
		fe := records.NewFieldError(field, value, err)
		invalid = append(invalid, fe)
		warnings = append(warnings, fmt.Sprintf("container %q (%.12s): %s=%q is left out of its catalog registration: %s", records.Truncate(c.Name), c.ID, fe.Field, fe.Value, fe.Reason))
	}
	base := splitList(env["SERVICE_TAGS"]) // cleaned
	seen := map[runtime.Port]bool{}        // one registration per container port and protocol
	for _, p := range m.c.Ports {
		if p.HostPort == 0 {
			continue // not published
		}
		proto := p.Proto
		if proto == "" {
			proto = "tcp"
		}
		key := runtime.Port{Port: p.Port, Proto: proto}
		if seen[key] {
			continue // published on several addresses: the first
		}
		seen[key] = true
		portEnv := func(key string) (string, string, bool) {
			k := fmt.Sprintf("SERVICE_%d_%s", p.Port, key)
			if v, ok := env[k]; ok {
				return k, v, true
			}
			k = "SERVICE_" + key
			v, ok := env[k]
			return k, v, ok
		}
		reg := Registration{
			Container: c.ID, ContainerName: m.c.Name, Image: m.c.Image,
			Service: m.service, Port: int(p.Port), Proto: proto, HostPort: int(p.HostPort),
			Tags: base, Health: records.Health(c.Health),
		}
		if n := env[fmt.Sprintf("SERVICE_%d_NAME", p.Port)]; n != "" {
			reg.Service = n // cleaned
		}
		if k, v, ok := portEnv("TAGS"); ok && k != "SERVICE_TAGS" {
			reg.Tags = nil
			for _, t := range splitList(v) {
				if err := records.CheckTag(t); err != nil {
					bad(k, t, err)
					continue
				}
				if len(reg.Tags) < records.MaxTags {
					reg.Tags = append(reg.Tags, t)
				}
			}
		}
		switch {
		case advertise != "":
			reg.Address = advertise
		case p.HostIP != "" && p.HostIP != "0.0.0.0" && p.HostIP != "::" && records.CheckIP(p.HostIP) == nil:
			reg.Address = p.HostIP
		}
		switch {
		case reg.Address != "":
			reg.CheckAddr = net.JoinHostPort(reg.Address, strconv.Itoa(reg.HostPort))
		case m.c.IP != "":
			reg.CheckAddr = net.JoinHostPort(m.c.IP, strconv.Itoa(reg.Port))
		default:
			reg.CheckAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(reg.HostPort))
		}
		reg.Attrs = attrs(env, int(p.Port))
		if proto == "tcp" {
			reg.Checks = checks(reg.CheckAddr, portEnv, bad)
		}
		regs = append(regs, reg)
	}
	return regs, warnings, invalid
}

// reservedAttrs are the SERVICE_* settings that are not attributes.
var reservedAttrs = []string{"NAME", "TAGS", "IGNORE", "WEIGHT", "ID", "IP", "PORT"}

// attrs are registrator's attributes of one port: SERVICE_<KEY>=value,
// overridden by SERVICE_<port>_<KEY>=value, key lower-cased, the check
// settings and berth's own settings left out.
func attrs(env map[string]string, port int) map[string]string {
	out := map[string]string{}
	own := fmt.Sprintf("SERVICE_%d_", port)
	var mine []string // this port's, applied last
	for _, k := range sortedKeys(env) {
		rest, ok := strings.CutPrefix(k, "SERVICE_")
		if !ok || rest == "" {
			continue
		}
		if r, ok := strings.CutPrefix(k, own); ok {
			mine = append(mine, k)
			rest = r
		} else if i := strings.IndexByte(rest, '_'); i > 0 {
			if _, err := strconv.ParseUint(rest[:i], 10, 16); err == nil {
				continue // another port's
			}
		}
		if attr(rest) && !slices.Contains(mine, k) {
			out[strings.ToLower(rest)] = env[k]
		}
	}
	for _, k := range mine {
		if rest := strings.TrimPrefix(k, own); attr(rest) {
			out[strings.ToLower(rest)] = env[k]
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// attr reports whether SERVICE_<key> is an attribute, not a setting.
func attr(key string) bool {
	return key != "" && !slices.Contains(reservedAttrs, key) && !strings.HasPrefix(key, "CHECK_")
}

// checks parses registrator's check settings of one port: SERVICE_CHECK_HTTP
// and _HTTPS (a path on the port), _TCP (true: connect to the port),
// _INTERVAL (default DefaultCheckInterval) and _TIMEOUT. A value that does
// not parse is reported with bad and its check left out.
func checks(addr string, get func(string) (string, string, bool), bad func(field, value string, err error)) []Check {
	interval, timeout := DefaultCheckInterval, time.Duration(0)
	if k, v, ok := get("CHECK_INTERVAL"); ok {
		d, err := checkDuration(v)
		if err != nil {
			bad(k, v, err)
		} else {
			interval = d
		}
	}
	if k, v, ok := get("CHECK_TIMEOUT"); ok {
		d, err := checkDuration(v)
		if err != nil {
			bad(k, v, err)
		} else {
			timeout = d
		}
	}
	var out []Check
	for _, scheme := range []string{"http", "https"} {
		k, v, ok := get("CHECK_" + strings.ToUpper(scheme))
		if !ok {
			continue
		}
		if err := checkPath(v); err != nil {
			bad(k, v, err)
			continue
		}
		out = append(out, Check{Kind: scheme, Target: scheme + "://" + addr + v, Interval: interval, Timeout: timeout})
	}
	if k, v, ok := get("CHECK_TCP"); ok {
		if b, err := strconv.ParseBool(strings.TrimSpace(v)); err != nil {
			bad(k, v, fmt.Errorf("want true or false"))
		} else if b {
			out = append(out, Check{Kind: "tcp", Target: addr, Interval: interval, Timeout: timeout})
		}
	}
	return out
}

func checkDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("not a duration (like 10s)")
	}
	if d < minCheckInterval || d > maxCheckInterval {
		return 0, fmt.Errorf("want %s to %s", minCheckInterval, maxCheckInterval)
	}
	return d, nil
}

// checkPath checks the path of an HTTP check: absolute, at most 1024
// bytes, printable ASCII, a valid request URI.
func checkPath(v string) error {
	switch {
	case !strings.HasPrefix(v, "/"):
		return fmt.Errorf("want a path starting with /")
	case len(v) > 1024:
		return fmt.Errorf("longer than 1024 bytes")
	}
	for _, r := range v {
		if r <= ' ' || r >= 0x7f {
			return fmt.Errorf("%q is not allowed in a check path", r)
		}
	}
	if _, err := url.ParseRequestURI(v); err != nil {
		return fmt.Errorf("not a URL path: %w", err)
	}
	return nil
}
