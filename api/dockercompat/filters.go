package dockercompat

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// filters are dockerd's filter arguments: key → set of values.
type filters map[string]map[string]bool

// parseFilters decodes the filters query parameter in either encoding
// clients use: {"k":{"v":true}} (docker CLI, moby client) and the legacy
// {"k":["v"]} (go-dockerclient, docker-gen). Keys outside accepted are a
// 400, as dockerd answers them.
func parseFilters(raw string, accepted ...string) (filters, error) {
	f := filters{}
	if raw == "" {
		return f, nil
	}
	var modern map[string]map[string]bool
	if err := json.Unmarshal([]byte(raw), &modern); err == nil {
		f = modern
	} else {
		var legacy map[string][]string
		if err2 := json.Unmarshal([]byte(raw), &legacy); err2 != nil {
			return nil, badRequest("invalid filters %q: %v", raw, err)
		}
		for k, vs := range legacy {
			m := map[string]bool{}
			for _, v := range vs {
				m[v] = true
			}
			f[k] = m
		}
	}
	for k := range f {
		if !slices.Contains(accepted, k) {
			return nil, badRequest("invalid filter '%s'", k)
		}
	}
	return f, nil
}

// has reports whether the key is given with at least one value.
func (f filters) has(k string) bool { return len(f[k]) > 0 }

// values returns the values of k, sorted.
func (f filters) values(k string) []string {
	var out []string
	for v, ok := range f[k] {
		if ok {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// any reports whether fn holds for one of k's values; true when k is not
// given.
func (f filters) any(k string, fn func(v string) bool) bool {
	if !f.has(k) {
		return true
	}
	for v, ok := range f[k] {
		if ok && fn(v) {
			return true
		}
	}
	return false
}

// matchLabels is dockerd's label filter: every value ("key" or
// "key=value", also "key!=value") must hold for labels.
func (f filters) matchLabels(k string, labels map[string]string) bool {
	for v, ok := range f[k] {
		if !ok {
			continue
		}
		if key, val, neg := strings.Cut(v, "!="); neg {
			if got, has := labels[key]; has && got == val {
				return false
			}
			continue
		}
		key, val, withVal := strings.Cut(v, "=")
		got, has := labels[key]
		if !has || withVal && got != val {
			return false
		}
	}
	return true
}

// matchRegexp is dockerd's fuzzy match (the filter value as a regular
// expression, or a substring when it is not a valid one).
func matchRegexp(pattern, s string) bool {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return strings.Contains(s, pattern)
	}
	return re.MatchString(s)
}

// portRange is a filter value "80", "80/tcp", "8000-8080/udp".
type portRange struct {
	lo, hi uint16
	proto  string
}

func parsePortRange(v string) (portRange, error) {
	ports, proto, _ := strings.Cut(v, "/")
	if proto == "" {
		proto = "tcp"
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	var pr portRange
	if _, err := fmt.Sscanf(lo, "%d", &pr.lo); err != nil {
		return pr, badRequest("invalid port filter %q", v)
	}
	pr.hi = pr.lo
	if isRange {
		if _, err := fmt.Sscanf(hi, "%d", &pr.hi); err != nil || pr.hi < pr.lo {
			return pr, badRequest("invalid port filter %q", v)
		}
	}
	pr.proto = proto
	return pr, nil
}

func (p portRange) match(port uint16, proto string) bool {
	return port >= p.lo && port <= p.hi && proto == p.proto
}
