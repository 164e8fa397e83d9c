package dialect

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// fromYaml decodes YAML, ignoring errors.
func fromYaml(s string) any {
	v, _ := mustFromYaml(s)
	return v
}

// mustFromYaml decodes YAML.
func mustFromYaml(s string) (any, error) {
	var v any
	err := yaml.Unmarshal([]byte(s), &v)
	return v, err
}

// toYaml encodes v as YAML, ignoring errors.
func toYaml(v any) string {
	s, _ := mustToYaml(v)
	return s
}

// mustToYaml encodes v as YAML.
func mustToYaml(v any) (string, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// mustBeOneOf returns value if it is one of the allowed strings, else an
// error.
func mustBeOneOf(allowed []any, value string) (string, error) {
	strs := make([]string, len(allowed))
	for i, a := range allowed {
		s, ok := a.(string)
		if !ok {
			return "", fmt.Errorf("allowed value %v (type %T) is not a string", a, a)
		}
		strs[i] = s
	}
	if slices.Contains(strs, value) {
		return value, nil
	}
	return "", fmt.Errorf("value must be one of %q; got %q", strs, value)
}

// mustBeInt returns value if it is a base-10 integer, else an error.
func mustBeInt(value string) (string, error) {
	return mustBeIntInRange(math.MinInt, math.MaxInt, value)
}

// mustBeIntInRange returns value if it is a base-10 integer in lo..hi,
// else an error.
func mustBeIntInRange(lo, hi int, value string) (string, error) {
	if lo > hi {
		return "", fmt.Errorf("invalid allowed range %d..%d", lo, hi)
	}
	if value == "" {
		return "", fmt.Errorf("value must be an integer; got an empty value")
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return "", fmt.Errorf("value must be an integer; got %q", value)
	}
	if n < int64(lo) || n > int64(hi) {
		return "", fmt.Errorf("value must be an integer between %d and %d; got %q", lo, hi, value)
	}
	return value, nil
}

// nginxMustParseHSTS checks a Strict-Transport-Security value, case
// insensitively, and returns it normalised:
// "max-age=N[; includeSubDomains[; preload]]", or "off".
func nginxMustParseHSTS(value string) (string, error) {
	value = strings.ToLower(strings.TrimSpace(value))
	switch value {
	case "":
		return "", fmt.Errorf("HSTS value cannot be empty")
	case "off":
		return value, nil
	}
	var maxAge int
	var sub, preload bool
	for d := range strings.SplitSeq(value, ";") {
		d = strings.TrimSpace(d)
		if age, ok := strings.CutPrefix(d, "max-age="); ok {
			n, err := strconv.Atoi(age)
			if err != nil || strings.TrimLeft(age, "0123456789") != "" {
				return "", fmt.Errorf("invalid max-age directive: %s", d)
			}
			maxAge = n
			continue
		}
		switch d {
		case "includesubdomains":
			sub = true
		case "preload":
			preload = true
		default:
			return "", fmt.Errorf("unknown HSTS directive: %s", d)
		}
	}
	switch {
	case maxAge <= 0:
		return "", fmt.Errorf("max-age directive must be greater than 0")
	case preload && !sub:
		return "", fmt.Errorf("preload directive requires includeSubDomains to be set")
	case preload && maxAge < 31536000:
		return "", fmt.Errorf("preload directive requires max-age to be at least 31536000 seconds (1 year)")
	case preload:
		return fmt.Sprintf("max-age=%d; includeSubDomains; preload", maxAge), nil
	case sub:
		return fmt.Sprintf("max-age=%d; includeSubDomains", maxAge), nil
	}
	return fmt.Sprintf("max-age=%d", maxAge), nil
}

// nginxQuote quotes value for an nginx configuration when it holds an
// unescaped special character ({ } ; # space) or quote: in single quotes
// if it holds an unescaped double quote, else in double quotes. A value
// already quoted is returned as is. Line breaks, and unescaped quotes of
// both kinds, are errors.
func nginxQuote(value string) (string, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return "", nil
	}
	if strings.ContainsAny(value, "\n\r") {
		return "", fmt.Errorf("value must not contain line breaks: %s", value)
	}
	single, double := unescapedQuote(value, '\''), unescapedQuote(value, '"')
	if single && double {
		return "", fmt.Errorf("value has both unescaped single and double quotes: %s", value)
	}
	switch {
	case double:
		return "'" + value + "'", nil
	case single || unescapedSpecial(value):
		return `"` + value + `"`, nil
	}
	return value, nil
}

// escapedAt reports whether the byte at i is escaped: preceded by an odd
// number of backslashes.
func escapedAt(value string, i int) bool {
	if i <= 0 || i >= len(value) {
		return false
	}
	n := 0
	for j := i - 1; j >= 0 && value[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// quotedWith reports whether value is enclosed in q, the closing one not
// escaped.
func quotedWith(value string, q byte) bool {
	n := len(value)
	return n >= 2 && value[0] == q && value[n-1] == q && !escapedAt(value, n-1)
}

// unescapedSpecial reports whether value holds an nginx special character
// that is neither escaped nor inside quotes around the whole value. A
// leading one counts even inside quotes.
func unescapedSpecial(value string) bool {
	for i := 0; i < len(value); i++ {
		if !strings.ContainsRune("{};# ", rune(value[i])) {
			continue
		}
		if i == 0 {
			return true
		}
		if !escapedAt(value, i) {
			return !quotedWith(value, '\'') && !quotedWith(value, '"')
		}
	}
	return false
}

// unescapedQuote reports whether value holds quote q unescaped, outside a
// pair of q around the whole value and, for a quote in the middle, outside
// quotes of the other kind around the whole value.
func unescapedQuote(value string, q byte) bool {
	other := byte('"')
	if q == '"' {
		other = '\''
	}
	n := len(value)
	for i := 0; i < n; i++ {
		if value[i] != q {
			continue
		}
		switch {
		case i == 0:
			if n < 2 || value[n-1] != q || escapedAt(value, n-1) {
				return true
			}
		case i == n-1:
			if !escapedAt(value, i) && value[0] != q {
				return true
			}
		default:
			if !escapedAt(value, i) {
				return !quotedWith(value, other)
			}
		}
	}
	return false
}
