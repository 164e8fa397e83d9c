package dialect

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeJSON decodes s as encoding/json does into an any (objects to
// map[string]any, arrays to []any, numbers to float64), with the same
// result and the same errors. Store values are mostly small objects of
// plain strings and numbers ({"host":…,"port":…}): those it decodes
// itself, with no reflection and with strings that share s's bytes,
// several times faster than json.Unmarshal (which is most of a cold
// render's CPU at 10,000 values: issue #14). Anything outside that
// subset (escapes, control or invalid UTF-8 bytes in strings, numbers
// out of range, nesting deeper than maxFastDepth, any syntax error) goes
// to encoding/json, which then decides.
func decodeJSON(s string) (any, error) {
	d := fastDecoder{s: s}
	if v, ok := d.value(0); ok {
		if d.skipSpace(); d.i == len(s) {
			return v, nil
		}
	}
	var out any
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}

// maxFastDepth bounds the fast decoder's recursion; deeper values go to
// encoding/json (whose own limit is 10,000).
const maxFastDepth = 32

// fastDecoder is decodeJSON's subset decoder: ok false means "not in
// the subset" (which includes every invalid text), never an error.
type fastDecoder struct {
	s string
	i int
}

func (d *fastDecoder) skipSpace() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDecoder) value(depth int) (any, bool) {
	d.skipSpace()
	if d.i >= len(d.s) || depth > maxFastDepth {
		return nil, false
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.string()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	default:
		return d.literal()
	}
}

func (d *fastDecoder) object(depth int) (any, bool) {
	d.i++ // '{'
	m := map[string]any{}
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return m, true
	}
	for {
		d.skipSpace()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, false
		}
		k, ok := d.string()
		if !ok {
			return nil, false
		}
		d.skipSpace()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, false
		}
		d.i++
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		m[k.(string)] = v // a repeated name: the last wins, as in encoding/json
		d.skipSpace()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return m, true
		default:
			return nil, false
		}
	}
}

func (d *fastDecoder) array(depth int) (any, bool) {
	d.i++ // '['
	l := []any{}
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return l, true
	}
	for {
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		l = append(l, v)
		d.skipSpace()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return l, true
		default:
			return nil, false
		}
	}
}

// string reads a string with no escapes and no control bytes, valid
// UTF-8: its text is then exactly its bytes.
func (d *fastDecoder) string() (any, bool) {
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.s); j++ {
		switch c := d.s[j]; {
		case c == '"':
			t := d.s[start:j]
			if !ascii && !utf8.ValidString(t) {
				return nil, false
			}
			d.i = j + 1
			return t, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// number reads a number of JSON's grammar,
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, as float64.
func (d *fastDecoder) number() (any, bool) {
	start, j := d.i, d.i
	digits := func() bool {
		k := j
		for j < len(d.s) && d.s[j] >= '0' && d.s[j] <= '9' {
			j++
		}
		return j > k
	}
	if d.s[j] == '-' {
		j++
	}
	if j < len(d.s) && d.s[j] == '0' {
		j++
	} else if !digits() {
		return nil, false
	}
	if j < len(d.s) && d.s[j] == '.' {
		j++
		if !digits() {
			return nil, false
		}
	}
	if j < len(d.s) && (d.s[j] == 'e' || d.s[j] == 'E') {
		j++
		if j < len(d.s) && (d.s[j] == '+' || d.s[j] == '-') {
			j++
		}
		if !digits() {
			return nil, false
		}
	}
	f, err := strconv.ParseFloat(d.s[start:j], 64)
	if err != nil { // out of range: encoding/json's error
		return nil, false
	}
	d.i = j
	return f, true
}

func (d *fastDecoder) literal() (any, bool) {
	for _, l := range [...]struct {
		text string
		v    any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if len(d.s)-d.i >= len(l.text) && d.s[d.i:d.i+len(l.text)] == l.text {
			d.i += len(l.text)
			return l.v, true
		}
	}
	return nil, false
}
