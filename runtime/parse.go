package runtime

import (
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// ParsePort parses a container port as Docker writes it in EXPOSE and in
// ExposedPorts keys: "80", "80/tcp", "53/udp" or "9/sctp" (tcp when no
// protocol is given).
func ParsePort(s string) (Port, error) {
	num, proto, hasProto := strings.Cut(s, "/")
	p := Port{Proto: "tcp"}
	if hasProto {
		p.Proto = proto
	}
	switch p.Proto {
	case "tcp", "udp", "sctp":
	default:
		return Port{}, Errorf(ErrInvalid, "port %q: unknown protocol %q (tcp, udp or sctp)", s, proto)
	}
	n, err := parsePortNumber(num)
	if err != nil {
		return Port{}, fmt.Errorf("port %q: %w", s, err)
	}
	p.Port = n
	return p, nil
}

// ParsePublish parses a published port as docker run -p takes it:
// "[IP:]HOSTPORT:CONTAINERPORT[/PROTO]", the IP an IPv4 address or a
// bracketed IPv6 one ("[::1]:8080:80"). Both ports are required (berth
// picks no host port for a string) and ranges are refused.
func ParsePublish(s string) (Port, error) {
	spec, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		spec += "/" + proto
	}
	var ip string
	if rest, ok := strings.CutPrefix(spec, "["); ok {
		addr, after, ok := strings.Cut(rest, "]:")
		if !ok {
			return Port{}, Errorf(ErrInvalid, "publish %q: want [IP:]HOSTPORT:CONTAINERPORT[/PROTO]", s)
		}
		ip, spec = addr, after
	} else if strings.Count(spec, ":") == 2 {
		ip, spec, _ = strings.Cut(spec, ":")
	}
	host, ctr, ok := strings.Cut(spec, ":")
	if !ok || strings.Contains(ctr, ":") {
		return Port{}, Errorf(ErrInvalid, "publish %q: want [IP:]HOSTPORT:CONTAINERPORT[/PROTO]", s)
	}
	p, err := ParsePort(ctr)
	if err != nil {
		return Port{}, fmt.Errorf("publish %q: container %w", s, err)
	}
	if p.HostPort, err = parsePortNumber(host); err != nil {
		return Port{}, fmt.Errorf("publish %q: host port: %w", s, err)
	}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			return Port{}, Errorf(ErrInvalid, "publish %q: host IP %q is not an IP address", s, ip)
		}
		p.HostIP = a.String() // 0.0.0.0 kept: it listens on IPv4 only, "" on both
	}
	return p, nil
}

func parsePortNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, Errorf(ErrInvalid, "%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// ParseVolume parses a bind mount as docker run -v and HostConfig.Binds
// write it: "SOURCE:DESTINATION[:MODE]". MODE is "ro" or "rw" (berth
// applies no other bind option); DESTINATION must be absolute and not "/".
// SOURCE is returned as given: callers decide what a relative one means
// (the CLI makes it absolute, the API refuses it as a named volume).
func ParseVolume(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Mount{}, Errorf(ErrInvalid, "volume %q: want SOURCE:DESTINATION[:ro|rw]", s)
	}
	m := Mount{Source: parts[0], Destination: parts[1]}
	if !path.IsAbs(m.Destination) || path.Clean(m.Destination) == "/" {
		return Mount{}, Errorf(ErrInvalid, "volume %q: the destination must be an absolute path other than /", s)
	}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return Mount{}, Errorf(ErrInvalid, "volume %q: mode %q: berth supports ro and rw only", s, parts[2])
		}
	}
	return m, nil
}
