package records

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the key prefix berth uses unless configured otherwise.
const DefaultPrefix = "/berth"

// The directories under the prefix.
const (
	servicesDir   = "services"
	containersDir = "containers"
	hostsDir      = "hosts"
)

// Kind says which record a key names.
type Kind uint8

// Key kinds.
const (
	KindService   Kind = iota + 1 // <prefix>/services/<service>/<host>/<id>
	KindContainer                 // <prefix>/containers/<host>/<id>
	KindHost                      // <prefix>/hosts/<host>
)

func (k Kind) String() string {
	switch k {
	case KindService:
		return "service"
	case KindContainer:
		return "container"
	case KindHost:
		return "host"
	}
	return "unknown"
}

// Key is a parsed record key. Fields a kind does not have are empty.
type Key struct {
	Kind    Kind
	Service string
	Host    string
	ID      string
}

// cleanPrefix normalises a prefix: "" becomes DefaultPrefix, a trailing "/"
// is dropped, a leading "/" is added.
func cleanPrefix(prefix string) string {
	if prefix == "" {
		return DefaultPrefix
	}
	prefix = strings.TrimRight(prefix, "/")
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	return prefix
}

// Root is the directory every record key is under, with a trailing slash:
// "<prefix>/".
func Root(prefix string) string { return cleanPrefix(prefix) + "/" }

// ServicesPrefix is the directory of every instance record, with a trailing
// slash: "<prefix>/services/".
func ServicesPrefix(prefix string) string { return cleanPrefix(prefix) + "/" + servicesDir + "/" }

// ContainersPrefix is the directory of every container record, with a
// trailing slash: "<prefix>/containers/".
func ContainersPrefix(prefix string) string { return cleanPrefix(prefix) + "/" + containersDir + "/" }

// HostsPrefix is the directory of every host record, with a trailing slash:
// "<prefix>/hosts/".
func HostsPrefix(prefix string) string { return cleanPrefix(prefix) + "/" + hostsDir + "/" }

// ServiceKey is the key of one instance record.
func ServiceKey(prefix, service, host, id string) string {
	return ServicesPrefix(prefix) + service + "/" + host + "/" + id
}

// ContainerKey is the key of one container record.
func ContainerKey(prefix, host, id string) string {
	return ContainersPrefix(prefix) + host + "/" + id
}

// HostKey is the key of one host record.
func HostKey(prefix, host string) string {
	return HostsPrefix(prefix) + host
}

// String returns the key under prefix.
func (k Key) String(prefix string) string {
	switch k.Kind {
	case KindService:
		return ServiceKey(prefix, k.Service, k.Host, k.ID)
	case KindContainer:
		return ContainerKey(prefix, k.Host, k.ID)
	case KindHost:
		return HostKey(prefix, k.Host)
	}
	return ""
}

// ValidSegment reports whether s can be one path segment of a key: not
// empty, not "." or "..", and without "/".
func ValidSegment(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.Contains(s, "/")
}

// ParseKey parses a record key under prefix. It fails for a key outside
// prefix, in an unknown directory, with the wrong number of segments, or
// with an empty segment.
func ParseKey(prefix, key string) (Key, error) {
	p := cleanPrefix(prefix)
	rest, ok := strings.CutPrefix(key, p)
	if ok {
		rest, ok = strings.CutPrefix(rest, "/")
	}
	if !ok {
		return Key{}, fmt.Errorf("key %q is not under prefix %q", key, p+"/")
	}
	p += "/"
	// Split into at most four segments without allocating: this runs for
	// every key of every snapshot.
	var parts [4]string
	n := 0
	for {
		if n == len(parts) {
			return Key{}, notRecordKey(key, p)
		}
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			parts[n] = rest
			n++
			break
		}
		parts[n], rest = rest[:i], rest[i+1:]
		n++
	}
	for _, s := range parts[1:n] {
		if !ValidSegment(s) {
			return Key{}, fmt.Errorf("key %q: bad segment %q", key, s)
		}
	}
	switch {
	case parts[0] == servicesDir && n == 4:
		return Key{Kind: KindService, Service: parts[1], Host: parts[2], ID: parts[3]}, nil
	case parts[0] == containersDir && n == 3:
		return Key{Kind: KindContainer, Host: parts[1], ID: parts[2]}, nil
	case parts[0] == hostsDir && n == 2:
		return Key{Kind: KindHost, Host: parts[1]}, nil
	}
	return Key{}, notRecordKey(key, p)
}

func notRecordKey(key, p string) error {
	return fmt.Errorf("key %q is not a record key (want %sservices/<service>/<host>/<id>, %scontainers/<host>/<id> or %shosts/<host>)", key, p, p, p)
}
