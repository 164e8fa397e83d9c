package dialect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
)

// escapeFuncs are the native dialect's functions for writing values from
// records into configuration formats, and for checking them with the
// records package's validation (the registrar's, so that one rule holds at
// both ends). Every escaping function either returns a value that is safe
// in its format or fails the render; none passes a value through unsafe.
// A template that must not fail on one bad record checks it first (check*)
// and leaves it out with a warn, as the shipped nginx.tmpl does.
func escapeFuncs() template.FuncMap {
	return template.FuncMap{
		"nginxString":   nginxString,
		"nginxToken":    nginxToken,
		"nginxComment":  nginxComment,
		"haproxyString": haproxyString,
		"shellQuote":    shellQuote,
		"jsonString":    jsonString,
		"upstreamName":  endpoints.UpstreamName,
		"checkHost":     reason(records.CheckHost),
		"checkPath":     reason(records.CheckPath),
		"checkProto":    reason(records.CheckProto),
		"checkService":  reason(records.CheckService),
		"checkIP":       reason(records.CheckIP),
		"checkPort": reason(func(s string) error {
			_, err := records.CheckPort(s)
			return err
		}),
	}
}

// reason turns a check into a template function: "" for a valid value,
// else why it is invalid.
func reason(check func(string) error) func(any) string {
	return func(v any) string {
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		if err := check(s); err != nil {
			return err.Error()
		}
		return ""
	}
}

// controlChar returns the first control character (or invalid UTF-8) of s.
func controlChar(s string) (rune, bool) {
	if !utf8.ValidString(s) {
		return utf8.RuneError, true
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029 {
			return r, true
		}
	}
	return 0, false
}

// nginxString quotes s as one nginx argument: in double quotes, with "
// and \ escaped. It fails for a control character or invalid UTF-8, and
// for "$": nginx expands variables inside quotes and has no escape for a
// literal dollar.
func nginxString(s string) (string, error) {
	if r, bad := controlChar(s); bad {
		return "", fmt.Errorf("nginxString: %U cannot be written in an nginx string", r)
	}
	if strings.ContainsRune(s, '$') {
		return "", fmt.Errorf("nginxString: %q holds a \"$\", which nginx would expand as a variable", records.Truncate(s))
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

// nginxToken returns s unchanged if it is one bare nginx token that cannot
// end a directive, open or close a block, start a comment or a quote, or
// name a variable: non-empty printable ASCII without whitespace,
// ; { } # ' " and `, with "$" only as its last character (a regular
// expression's end anchor; nothing can follow it to make a variable name)
// and "\" anywhere but last (nginx's parser takes the byte after a
// backslash literally, and every byte that could matter is excluded
// already; a last backslash would take the ";" after the token).
// Otherwise it fails.
func nginxToken(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("nginxToken: empty value")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		last := i == len(s)-1
		if c <= ' ' || c >= 0x7f || strings.IndexByte(";{}#'\"`", c) >= 0 || c == '$' && !last || c == '\\' && last {
			return "", fmt.Errorf("nginxToken: %q holds %q, which is not safe in a bare nginx token", records.Truncate(s), c)
		}
	}
	return s, nil
}

// nginxComment makes s safe in the rest of a "#" comment line: every byte
// that is not printable ASCII becomes "?", and it is cut to
// records.MaxReportedValue bytes. It never fails.
func nginxComment(s string) string {
	s = records.Truncate(s)
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// haproxyString quotes s as one HAProxy argument. In single (strong)
// quotes HAProxy interprets nothing, so s goes there when it holds no
// single quote; otherwise in double quotes, with \ " and $ escaped (no
// environment variable is expanded). It fails for a control character or
// invalid UTF-8: a line break ends the directive.
func haproxyString(s string) (string, error) {
	if r, bad := controlChar(s); bad {
		return "", fmt.Errorf("haproxyString: %U cannot be written in an HAProxy argument", r)
	}
	if !strings.Contains(s, "'") {
		return "'" + s + "'", nil
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(s) + `"`, nil
}

// shellQuote quotes s as one POSIX shell word: in single quotes, each
// single quote replaced by quote, backslash, quote, quote. It fails for a
// NUL byte, which no shell argument can hold.
func shellQuote(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("shellQuote: a NUL byte cannot be a shell argument")
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// jsonString is s as a JSON string, quotes included (invalid UTF-8 becomes
// U+FFFD). HTML characters are not escaped; U+2028 and U+2029 are.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
