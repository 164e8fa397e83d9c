package dockergen

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/berthd/berth/runtime"
)

// Filter selects containers the way docker ps filters do (docker-gen passes
// its container filters to Docker's list call; berth applies them to the
// containers it follows, so no listing is needed per render). Terms are
// ANDed; the values of one term are ORed, except label's, which Docker
// ANDs (label=a --filter label=b: both labels).
type Filter struct {
	terms []term
	key   string // the terms as parsed, global flags applied: equal keys select alike
}

type term struct {
	key   string
	match func(runtime.Container) bool
}

// supportedFilters are the docker ps filters berth applies.
const supportedFilters = "ancestor, expose, health, id, label, name, network, publish, status"

// ParseFilter builds a filter from docker-style terms (label=k, label=k=v,
// name=regexp, status=running, ...) and the global docker-gen flags.
func ParseFilter(raw map[string][]string, g Filters) (Filter, error) {
	raw = cloneFilter(raw)
	if g.OnlyExposed {
		raw["expose"] = append(raw["expose"], "1-65535")
	}
	if g.OnlyPublished {
		raw["publish"] = append(raw["publish"], "1-65535")
	}
	if !g.IncludeStopped && len(raw["status"]) == 0 {
		raw["status"] = []string{"running"}
	}
	var f Filter
	var canon strings.Builder
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		fmt.Fprintf(&canon, "%q=%q;", key, raw[key])
		values := raw[key]
		var preds []func(runtime.Container) bool
		for _, v := range values {
			p, err := predicate(key, v)
			if err != nil {
				return Filter{}, err
			}
			preds = append(preds, p)
		}
		all := key == "label"
		f.terms = append(f.terms, term{key: key, match: func(c runtime.Container) bool {
			for _, p := range preds {
				if p(c) != all {
					return !all
				}
			}
			return all
		}})
	}
	f.key = canon.String()
	return f, nil
}

// Match reports whether c passes every term.
func (f Filter) Match(c runtime.Container) bool {
	for _, t := range f.terms {
		if !t.match(c) {
			return false
		}
	}
	return true
}

func predicate(key, v string) (func(runtime.Container) bool, error) {
	switch key {
	case "label":
		k, want, hasValue := strings.Cut(v, "=")
		return func(c runtime.Container) bool {
			got, ok := c.Labels[k]
			return ok && (!hasValue || got == want)
		}, nil
	case "name":
		re, err := regexp.Compile(v)
		if err != nil {
			return nil, fmt.Errorf("container filter name=%q: %w", v, err)
		}
		return func(c runtime.Container) bool { return re.MatchString(c.Name) || re.MatchString("/"+c.Name) }, nil
	case "id":
		return func(c runtime.Container) bool { return strings.HasPrefix(c.ID, v) }, nil
	case "status":
		return func(c runtime.Container) bool { return string(c.State) == v }, nil
	case "health":
		return func(c runtime.Container) bool { return string(c.Health) == v }, nil
	case "network":
		return func(c runtime.Container) bool {
			return slices.ContainsFunc(c.Networks, func(n runtime.Network) bool { return n.Name == v })
		}, nil
	case "ancestor":
		return func(c runtime.Container) bool {
			return c.Image == v || strings.TrimSuffix(c.Image, ":latest") == strings.TrimSuffix(v, ":latest")
		}, nil
	case "expose", "publish":
		lo, hi, proto, err := portRange(v)
		if err != nil {
			return nil, fmt.Errorf("container filter %s=%q: %w", key, v, err)
		}
		published := key == "publish"
		return func(c runtime.Container) bool {
			return slices.ContainsFunc(c.Ports, func(p runtime.Port) bool {
				port := p.Port
				if published {
					if p.HostPort == 0 {
						return false
					}
					port = p.HostPort
				}
				return port >= lo && port <= hi && (proto == "" || p.Proto == proto)
			})
		}, nil
	}
	return nil, fmt.Errorf("container filter %q: not supported (supported: %s)", key, supportedFilters)
}

// portRange parses "80", "80/tcp", "8000-8100" or "1-65535/udp".
func portRange(s string) (lo, hi uint16, proto string, err error) {
	s, proto, _ = strings.Cut(s, "/")
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	l, err1 := strconv.ParseUint(a, 10, 16)
	h, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil || l > h {
		return 0, 0, "", fmt.Errorf("want PORT[-PORT][/PROTO]")
	}
	return uint16(l), uint16(h), proto, nil
}

func cloneFilter(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}
