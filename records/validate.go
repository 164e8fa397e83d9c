package records

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds of the values CheckHost, CheckPath and the other checks accept.
const (
	MaxHostLen    = 253  // a host name, any form (RFC 1123 total)
	MaxLabelLen   = 63   // one label of a host name
	MaxHosts      = 256  // names in one VIRTUAL_HOST list
	MaxPathLen    = 1024 // VIRTUAL_PATH
	MaxServiceLen = 128  // a service name (one key segment)
	MaxIDLen      = 128  // a container id (one key segment)
	MaxNameLen    = 255  // a container name
	MaxImageLen   = 512  // an image reference
	MaxTagLen     = 128  // one of SERVICE_TAGS
	MaxTags       = 64   // how many SERVICE_TAGS
	MaxWeight     = 256  // berth.weight / SERVICE_WEIGHT (HAProxy's maximum)
	// MaxReportedValue bounds the value a FieldError keeps.
	MaxReportedValue = 80
)

// Protocols lists the VIRTUAL_PROTO values accepted: nginx-proxy's set.
// A template that serves fewer says so itself (the shipped nginx.tmpl
// serves http, https, grpc and grpcs, and reports the others).
var protocols = []string{"http", "https", "grpc", "grpcs", "uwsgi", "fastcgi"}

// FieldError is one piece of container metadata left out of a record, and
// why. It is stored on the instance record (Instance.Invalid) and logged.
type FieldError struct {
	Field  string `json:"field"`  // "VIRTUAL_HOST", "SERVICE_8080_NAME", "label berth.service", "name", "image", ...
	Value  string `json:"value"`  // the value, cut to MaxReportedValue bytes (see Truncate)
	Reason string `json:"reason"` // what is wrong with it
}

// NewFieldError returns the FieldError of value in field, its value cut
// with Truncate.
func NewFieldError(field, value string, err error) FieldError {
	return FieldError{Field: field, Value: Truncate(value), Reason: err.Error()}
}

// String is "FIELD=\"value\": reason", the value Go-quoted so that control
// characters show as escapes.
func (e FieldError) String() string {
	return fmt.Sprintf("%s=%q: %s", e.Field, e.Value, e.Reason)
}

// Truncate cuts s to at most MaxReportedValue bytes, on a rune boundary,
// marking the cut with "…(N bytes)".
func Truncate(s string) string {
	if len(s) <= MaxReportedValue {
		return s
	}
	cut := MaxReportedValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// describe names a byte or rune for a reason text.
func describe(r rune) string {
	switch {
	case r == ' ':
		return "a space"
	case r < 0x20 || r == 0x7f:
		return fmt.Sprintf("control character %U", r)
	case r >= utf8.RuneSelf:
		return fmt.Sprintf("non-ASCII character %U (use the punycode form, xn--...)", r)
	}
	return fmt.Sprintf("%q", r)
}

// firstBad returns the first rune of s that ok rejects, and whether there
// is one.
func firstBad(s string, ok func(rune) bool) (rune, bool) {
	for _, r := range s {
		if !ok(r) {
			return r, true
		}
	}
	return 0, false
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// metaSafe reports whether r is printable ASCII and none of the characters
// that delimit or quote in nginx, HAProxy or shell configurations:
// whitespace, ; { } # ' " ` and \.
func metaSafe(r rune) bool {
	return r > ' ' && r < 0x7f && !strings.ContainsRune(";{}#'\"`\\", r)
}

// CheckHost checks one host name of VIRTUAL_HOST. It accepts:
//
//   - an RFC 1123 name: labels of letters, digits and hyphens, not starting
//     or ending with a hyphen, 1 to 63 bytes each, 253 bytes in all, no
//     empty label (so no trailing dot), the last label not all digits
//     unless the whole name is an IPv4 address (RFC 3696 §2);
//   - a wildcard name as nginx-proxy documents it: "*." and a name
//     (*.example.com), or a name and ".*" (example.*);
//   - a regular expression: "~" and a pattern of printable ASCII without
//     whitespace, ; { } # ' " or ` (so no {n} repetition), with "$" only
//     as its last character (the end anchor: nowhere can it start an nginx
//     variable), not ending in a backslash (it would escape the ";" after
//     it in nginx's configuration), that compiles as Go (RE2)
//     syntax: the subset of PCRE nginx also accepts, so nginx -t cannot
//     fail on it (no look-around, no back-references).
//
// Non-ASCII (IDN) names must be given in their punycode (xn--) form.
func CheckHost(h string) error {
	if h == "" {
		return errors.New("empty host name")
	}
	if len(h) > MaxHostLen {
		return fmt.Errorf("longer than %d bytes (%d)", MaxHostLen, len(h))
	}
	if re, ok := strings.CutPrefix(h, "~"); ok {
		return checkHostRegexp(re)
	}
	name := h
	switch {
	case strings.HasPrefix(h, "*."):
		name = h[2:]
	case strings.HasSuffix(h, ".*"):
		name = h[:len(h)-2]
	}
	if strings.Contains(name, "*") {
		return errors.New(`a wildcard "*" is allowed only as the whole first label (*.example.com) or the whole last label (example.*)`)
	}
	return checkDNSName(name)
}

func checkDNSName(name string) error {
	if r, bad := firstBad(name, func(r rune) bool { return isAlnum(r) || r == '-' || r == '.' }); bad {
		return fmt.Errorf("%s is not allowed in a host name (letters, digits, '-' and '.')", describe(r))
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return errors.New("empty label (a leading, trailing or doubled '.')")
		case len(label) > MaxLabelLen:
			return fmt.Errorf("label %q is longer than %d bytes", Truncate(label), MaxLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	if _, bad := firstBad(last, func(r rune) bool { return r >= '0' && r <= '9' }); !bad {
		if a, err := netip.ParseAddr(name); err != nil || !a.Is4() {
			return errors.New("the last label is all digits, but the name is not an IPv4 address")
		}
	}
	return nil
}

func checkHostRegexp(re string) error {
	if re == "" {
		return errors.New(`empty regular expression after "~"`)
	}
	if r, bad := firstBad(re, func(r rune) bool { return metaSafe(r) || r == '\\' }); bad {
		return fmt.Errorf("%s is not allowed in a host name regular expression", describe(r))
	}
	if i := strings.IndexByte(re, '$'); i >= 0 && i != len(re)-1 {
		return errors.New(`"$" is allowed only at the end of a regular expression`)
	}
	if strings.HasSuffix(re, `\`) {
		return errors.New("a regular expression must not end in a backslash")
	}
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("not a regular expression both nginx (PCRE) and RE2 accept: %w", err)
	}
	return nil
}

// SplitHosts splits a VIRTUAL_HOST list at commas, trims each name and
// drops empty ones, the way nginx-proxy reads it.
func SplitHosts(list string) []string {
	var out []string
	for h := range strings.SplitSeq(list, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// CheckHostList checks a whole VIRTUAL_HOST value: it returns the valid
// names (in order, at most MaxHosts) and a FieldError for each invalid
// one (for the names past MaxHosts, one for all).
func CheckHostList(field, list string) (valid []string, bad []FieldError) {
	hosts := SplitHosts(list)
	for i, h := range hosts {
		if len(valid) == MaxHosts {
			bad = append(bad, NewFieldError(field, strings.Join(hosts[i:], ","), fmt.Errorf("more than %d host names", MaxHosts)))
			break
		}
		if err := CheckHost(h); err != nil {
			bad = append(bad, NewFieldError(field, h, err))
			continue
		}
		valid = append(valid, h)
	}
	return valid, bad
}

// CheckPath checks VIRTUAL_PATH: it must start with "/", be at most
// MaxPathLen bytes of printable ASCII without whitespace, ; { } # ' " `
// \ or $ (an nginx variable), and have no "." or ".." segment (nginx matches normalised URIs,
// so such a location could never match). nginx's location modifiers
// (~, ~*, =, ^~) are refused: a regular expression location is a second
// language inside the configuration, and a prefix is what nginx-proxy's
// VIRTUAL_PATH means in the common case.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathLen:
		return fmt.Errorf("longer than %d bytes (%d)", MaxPathLen, len(p))
	case p[0] != '/':
		return errors.New(`a path must start with "/" (location modifiers such as "~" or "=" are not supported)`)
	}
	if r, bad := firstBad(p, func(r rune) bool { return metaSafe(r) && r != '$' }); bad {
		return fmt.Errorf("%s is not allowed in a path", describe(r))
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q segment in a path", seg)
		}
	}
	return nil
}

// CheckProto checks VIRTUAL_PROTO against nginx-proxy's protocols (any
// case): http, https, grpc, grpcs, uwsgi, fastcgi.
func CheckProto(p string) error {
	for _, ok := range protocols {
		if strings.EqualFold(p, ok) {
			return nil
		}
	}
	return fmt.Errorf("not one of %s", strings.Join(protocols, ", "))
}

// CheckPort parses a port (VIRTUAL_PORT): a decimal number 1-65535,
// surrounding spaces allowed.
func CheckPort(s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, errors.New("not a port (1-65535)")
	}
	return p, nil
}

// checkSegmentName checks a name that becomes one key segment: 1 to max
// bytes of letters, digits, '.', '_' and '-', starting with a letter or
// digit (so never "." or "..", never a "/").
func checkSegmentName(what, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s", what)
	case len(s) > max:
		return fmt.Errorf("longer than %d bytes (%d)", max, len(s))
	case !isAlnum(rune(s[0])):
		return fmt.Errorf("a %s must start with a letter or digit", what)
	}
	if r, bad := firstBad(s, func(r rune) bool { return isAlnum(r) || r == '.' || r == '_' || r == '-' }); bad {
		return fmt.Errorf("%s is not allowed in a %s (letters, digits, '.', '_' and '-')", describe(r), what)
	}
	return nil
}

// CheckService checks a service name from any source (label berth.service,
// SERVICE_NAME, the compose service label, an image's base name,
// SERVICE_<port>_NAME): it becomes a key segment, so 1 to MaxServiceLen
// bytes of letters, digits, '.', '_' and '-', starting with a letter or
// digit.
func CheckService(s string) error { return checkSegmentName("service name", s, MaxServiceLen) }

// CheckID checks a container id: it becomes a key segment.
func CheckID(s string) error { return checkSegmentName("container id", s, MaxIDLen) }

// CheckContainerName checks a container name (without Docker's leading
// "/"): Docker's charset, [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most MaxNameLen
// bytes.
func CheckContainerName(s string) error {
	return checkSegmentName("container name", strings.TrimPrefix(s, "/"), MaxNameLen)
}

// CheckImage checks an image reference: at most MaxImageLen bytes of
// letters, digits and . _ - / : @, every "/"-separated component starting
// with a letter or digit, and no ".." anywhere (Docker's reference grammar
// allows neither; a path traversal needs both).
func CheckImage(ref string) error {
	switch {
	case ref == "":
		return errors.New("empty image reference")
	case len(ref) > MaxImageLen:
		return fmt.Errorf("longer than %d bytes (%d)", MaxImageLen, len(ref))
	}
	if r, bad := firstBad(ref, func(r rune) bool { return isAlnum(r) || strings.ContainsRune("._-/:@", r) }); bad {
		return fmt.Errorf("%s is not allowed in an image reference", describe(r))
	}
	if strings.Contains(ref, "..") {
		return errors.New(`".." in an image reference`)
	}
	for seg := range strings.SplitSeq(ref, "/") {
		if seg == "" || !isAlnum(rune(seg[0])) {
			return fmt.Errorf("image reference component %q does not start with a letter or digit", seg)
		}
	}
	return nil
}

// CheckTag checks one of SERVICE_TAGS: 1 to MaxTagLen bytes of printable
// ASCII without ; { } # ' " ` or \, and no whitespace but the space
// (fabio's "urlprefix-/api strip=/api" is one tag).
func CheckTag(s string) error {
	switch {
	case s == "":
		return errors.New("empty tag")
	case len(s) > MaxTagLen:
		return fmt.Errorf("longer than %d bytes (%d)", MaxTagLen, len(s))
	}
	if r, bad := firstBad(s, func(r rune) bool { return r == ' ' || metaSafe(r) }); bad {
		return fmt.Errorf("%s is not allowed in a tag", describe(r))
	}
	return nil
}

// CheckWeight parses a weight (berth.weight, SERVICE_WEIGHT): an integer
// 0 to MaxWeight.
func CheckWeight(s string) (int, error) {
	w, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || w < 0 || w > MaxWeight {
		return 0, fmt.Errorf("not a weight (0-%d)", MaxWeight)
	}
	return w, nil
}

// CheckIP checks an instance's address: an IPv4 or IPv6 address without
// a zone.
func CheckIP(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return errors.New("not an IP address")
	}
	return nil
}
