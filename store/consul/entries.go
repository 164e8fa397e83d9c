package consul

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// entryScanner reads Consul's JSON array of KV entries from a stream one
// entry at a time, with no reflection: each entry's Key, Value and
// ModifyIndex come out as their raw JSON texts (slices of its buffer,
// valid until the next call), every other field is checked and skipped.
// At 10,000 keys an answer is 2.3 MB of JSON; json.Decoder spent ~12 ms
// of CPU on one, every blocking answer of a watch (issue #14).
//
// It accepts exactly JSON: what is not (a bad token, a missing comma,
// data after the array) is an error, as from encoding/json. Field names
// match case-insensitively and the last of a repeated field wins, as when
// encoding/json decodes into a struct.
type entryScanner struct {
	r   io.Reader
	buf []byte
	pos int   // next byte to scan in buf
	err error // of r: io.EOF once it is read whole
	n   int   // entries returned
	// state: 0 before '[', 1 after '[', 2 after an entry, 3 after ']'
	state int
	// escaped: the last string token had an escape
	escaped bool
}

// rawEntry is one entry's fields as raw JSON (nil when absent).
type rawEntry struct {
	Key, Value, ModifyIndex []byte
}

// errShort: the buffer ends inside the token being scanned.
var errShort = errors.New("short")

const scanChunk = 32 << 10

func newEntryScanner(r io.Reader) *entryScanner {
	return &entryScanner{r: r, buf: make([]byte, 0, scanChunk)}
}

// fill reads more of r into buf, keeping buf[keep:] (the token being
// scanned) and dropping what is before it; positions shift by keep.
func (s *entryScanner) fill(keep int) bool {
	if s.err != nil {
		return false
	}
	n := copy(s.buf, s.buf[keep:])
	s.buf = s.buf[:n]
	s.pos -= keep
	if cap(s.buf)-len(s.buf) < scanChunk/2 {
		s.buf = append(make([]byte, 0, 2*cap(s.buf)), s.buf...)
	}
	m, err := s.r.Read(s.buf[len(s.buf):cap(s.buf)])
	s.buf = s.buf[:len(s.buf)+m]
	if err != nil {
		s.err = err
	}
	return m > 0 || err == nil
}

// Next returns the next entry; ok false at the end of the array (after
// checking that nothing but white space follows it) or on an error.
func (s *entryScanner) Next() (e rawEntry, ok bool, err error) {
	for {
		start := s.pos
		e, kind, err := s.step()
		if err == errShort {
			s.pos = start
			if s.fill(start) {
				continue
			}
			if s.err != io.EOF {
				return rawEntry{}, false, fmt.Errorf("reading the answer: %w", s.err)
			}
			return rawEntry{}, false, errors.New("not a JSON array of KV entries: unexpected end of the answer")
		}
		if err != nil {
			return rawEntry{}, false, fmt.Errorf("not a JSON array of KV entries: %w", err)
		}
		switch kind {
		case stepDone:
			return rawEntry{}, false, s.end()
		case stepOn:
			continue
		}
		s.n++
		return e, true, nil
	}
}

// end checks that only white space follows the array.
func (s *entryScanner) end() error {
	for {
		s.space()
		if s.pos < len(s.buf) {
			return fmt.Errorf("not a JSON array of KV entries: data after the array at %q", s.buf[s.pos:min(s.pos+20, len(s.buf))])
		}
		if !s.fill(s.pos) {
			if s.err != io.EOF {
				return fmt.Errorf("reading the answer: %w", s.err)
			}
			return nil
		}
	}
}

// What step scanned.
const (
	stepEntry = iota // an entry
	stepOn           // the array's '[': scan on
	stepDone         // the array's ']'
)

// step scans the array's '[', or up to the next entry, or the array's
// ']'; errShort when buf ends first (the state is then unchanged).
func (s *entryScanner) step() (rawEntry, int, error) {
	s.space()
	if s.pos >= len(s.buf) {
		return rawEntry{}, 0, errShort
	}
	c := s.buf[s.pos]
	switch s.state {
	case 0:
		if c != '[' {
			return rawEntry{}, 0, fmt.Errorf("begins with %q", c)
		}
		s.pos++
		s.state = 1
		return rawEntry{}, stepOn, nil
	case 1, 2:
		if c == ']' {
			s.pos++
			s.state = 3
			return rawEntry{}, stepDone, nil
		}
		if s.state == 2 {
			if c != ',' {
				return rawEntry{}, 0, fmt.Errorf("after entry %d: %q, want , or ]", s.n-1, c)
			}
			s.pos++
			s.space()
		}
		e, err := s.entry()
		if err != nil {
			return rawEntry{}, 0, err
		}
		s.state = 2
		return e, stepEntry, nil
	}
	return rawEntry{}, stepDone, nil
}

func (s *entryScanner) space() {
	for s.pos < len(s.buf) && s.buf[s.pos] <= ' ' {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// entry scans one object.
func (s *entryScanner) entry() (rawEntry, error) {
	var e rawEntry
	if s.pos >= len(s.buf) {
		return e, errShort
	}
	if s.buf[s.pos] != '{' {
		return e, fmt.Errorf("entry %d: not an object", s.n)
	}
	s.pos++
	s.space()
	if s.pos >= len(s.buf) {
		return e, errShort
	}
	if s.buf[s.pos] == '}' {
		s.pos++
		return e, nil
	}
	for {
		s.space()
		name, err := s.token()
		if err != nil {
			return e, err
		}
		nameEscaped := s.escaped
		if name[0] != '"' {
			return e, fmt.Errorf("entry %d: a field name that is not a string", s.n)
		}
		s.space()
		if s.pos >= len(s.buf) {
			return e, errShort
		}
		if s.buf[s.pos] != ':' {
			return e, fmt.Errorf("entry %d: no : after a field name", s.n)
		}
		s.pos++
		s.space()
		v, err := s.token()
		if err != nil {
			return e, err
		}
		n := name[1 : len(name)-1]
		if nameEscaped {
			var u string
			if err := json.Unmarshal(name, &u); err != nil {
				return e, fmt.Errorf("entry %d: a bad field name: %w", s.n, err)
			}
			n = []byte(u)
		}
		switch {
		case string(n) == "Key" || bytes.EqualFold(n, []byte("Key")):
			e.Key = v
		case string(n) == "Value" || bytes.EqualFold(n, []byte("Value")):
			e.Value = v
		case string(n) == "ModifyIndex" || bytes.EqualFold(n, []byte("ModifyIndex")):
			e.ModifyIndex = v
		}
		s.space()
		if s.pos >= len(s.buf) {
			return e, errShort
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return e, nil
		default:
			return e, fmt.Errorf("entry %d: %q after a field, want , or }", s.n, s.buf[s.pos])
		}
	}
}

// token scans one JSON value and returns its text: strings, numbers and
// literals are checked here, objects and arrays (no KV entry field has
// one) by json.Valid.
func (s *entryScanner) token() ([]byte, error) {
	if s.pos >= len(s.buf) {
		return nil, errShort
	}
	start := s.pos
	switch c := s.buf[s.pos]; {
	case c == '"':
		s.escaped = false
		for j := s.pos + 1; j < len(s.buf); j++ {
			b := s.buf[j]
			if b > '\\' || b != '"' && b != '\\' && b >= 0x20 {
				continue // the common case first: one comparison
			}
			switch {
			case b == '"':
				s.pos = j + 1
				t := s.buf[start:s.pos]
				if s.escaped && !json.Valid(t) {
					return nil, fmt.Errorf("entry %d: a bad string escape", s.n)
				}
				return t, nil
			case b == '\\':
				s.escaped = true
				j++ // the byte it escapes (which may be a quote)
			default:
				return nil, fmt.Errorf("entry %d: a control character in a string", s.n)
			}
		}
		return nil, errShort
	case c == '{' || c == '[':
		depth, inString := 0, false
		for j := s.pos; j < len(s.buf); j++ {
			b := s.buf[j]
			switch {
			case inString && b == '\\':
				j++
			case b == '"':
				inString = !inString
			case inString:
			case b == '{' || b == '[':
				depth++
			case b == '}' || b == ']':
				if depth--; depth == 0 {
					s.pos = j + 1
					t := s.buf[start:s.pos]
					if !json.Valid(t) {
						return nil, fmt.Errorf("entry %d: a bad object or array", s.n)
					}
					return t, nil
				}
			}
		}
		return nil, errShort
	default:
		j := s.pos
		for j < len(s.buf) && (isNumberByte(s.buf[j]) || s.buf[j] >= 'a' && s.buf[j] <= 'z') {
			j++
		}
		if j == len(s.buf) {
			return nil, errShort // the token may go on
		}
		t := s.buf[start:j]
		if !validScalar(t) {
			return nil, fmt.Errorf("entry %d: a bad value %.20q", s.n, t)
		}
		s.pos = j
		return t, nil
	}
}

func isNumberByte(b byte) bool {
	return b >= '0' && b <= '9' || b == '-' || b == '+' || b == '.' || b == 'e' || b == 'E'
}

// validScalar reports whether t is a JSON number or true, false, null.
func validScalar(t []byte) bool {
	switch string(t) {
	case "true", "false", "null":
		return true
	case "":
		return false
	}
	i := 0
	digits := func() bool {
		k := i
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		return i > k
	}
	if t[i] == '-' {
		i++
	}
	if i < len(t) && t[i] == '0' {
		i++
	} else if !digits() {
		return false
	}
	if i < len(t) && t[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		i++
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(t)
}
