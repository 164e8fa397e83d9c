package dockercompat

import (
	"strconv"
	"strings"
)

// apiVersion is a Docker API version, major.minor.
type apiVersion struct{ major, minor int }

func parseVersion(s string) (apiVersion, bool) {
	maj, min, ok := strings.Cut(s, ".")
	if !ok {
		return apiVersion{}, false
	}
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil || a < 0 || b < 0 {
		return apiVersion{}, false
	}
	return apiVersion{a, b}, true
}

func mustVersion(s string) apiVersion {
	v, ok := parseVersion(s)
	if !ok {
		panic("bad API version " + s)
	}
	return v
}

func (v apiVersion) less(o apiVersion) bool {
	return v.major < o.major || v.major == o.major && v.minor < o.minor
}

// before reports whether v is older than s ("1.52").
func (v apiVersion) before(s string) bool { return v.less(mustVersion(s)) }

func (v apiVersion) String() string { return strconv.Itoa(v.major) + "." + strconv.Itoa(v.minor) }
