// Package recordstest holds the hostile-input corpus: values a container
// (or anyone who can write the store) may put in any piece of routing
// metadata. The registrar's, the templates' and the daemon's tests run it
// through every field; each value says in which fields it is legitimately
// valid, so that a test never derives its expectation from the validator
// under test.
package recordstest

import "strings"

// Field is a piece of metadata the corpus is tried in.
type Field string

// The fields.
const (
	Host    Field = "VIRTUAL_HOST"
	Path    Field = "VIRTUAL_PATH"
	Port    Field = "VIRTUAL_PORT"
	Proto   Field = "VIRTUAL_PROTO"
	Service Field = "service name" // SERVICE_NAME, SERVICE_<port>_NAME, label berth.service
	Name    Field = "container name"
	Image   Field = "image"
)

// Fields lists every Field.
var Fields = []Field{Host, Path, Port, Proto, Service, Name, Image}

// Value is one hostile value.
type Value struct {
	Case    string  // a short name, for subtests
	Value   string  //
	ValidIn []Field // the fields in which it is legitimately valid
}

// Valid reports whether v is valid in f.
func (v Value) Valid(f Field) bool {
	for _, g := range v.ValidIn {
		if g == f {
			return true
		}
	}
	return false
}

// label is a label of n bytes c.
func label(n int, c byte) string { return strings.Repeat(string(c), n) }

// Long111 is a DNS-valid 111-byte host name: beyond nginx's default
// server_names_hash_bucket_size of 64.
var Long111 = label(55, 'a') + "." + label(49, 'b') + ".local"

// Long253 is a DNS-valid host name of the maximum length, 253 bytes.
var Long253 = label(63, 'c') + "." + label(63, 'd') + "." + label(63, 'e') + "." + label(56, 'f') + ".test"

// Corpus returns the hostile values. Every value is non-empty after
// trimming spaces and holds no comma, so that "good.localhost,"+value is a
// list of exactly two names.
func Corpus() []Value {
	return []Value{
		{"semicolon", "bad;host", nil},
		{"semicolon directive", "a.localhost; include /etc/shadow", nil},
		{"include", "include /etc/shadow", nil},
		{"open brace", "a{b", nil},
		{"close brace", "a}b", nil},
		{"lone close brace", "}", nil},
		{"block", "x.localhost { return 200; } server { server_name y.localhost", nil},
		{"hash", "a#b.localhost", nil},
		{"leading hash", "#a.localhost", nil},
		{"single quote", "a'b", nil},
		{"double quote", `a"b`, nil},
		{"backslash", `a\b`, nil},
		{"trailing backslash", `/a\`, nil},
		{"backtick", "a`id`b", nil},
		{"dollar", "$host", nil},
		{"space", "a.localhost good.localhost", nil},
		{"newline", "a.localhost\ngood.localhost", nil},
		{"newline block", "a.localhost;\n}\nserver {\n listen 80;\n server_name evil.localhost;\n location / { proxy_pass http://127.0.0.1:9090; }\n", nil},
		{"carriage return", "a.localhost\rgood.localhost", nil},
		{"tab", "a.localhost\tgood.localhost", nil},
		{"NUL", "a.local\x00host", nil},
		{"escape", "a\x1b[31m.localhost", nil},
		{"DEL", "a\x7f.localhost", nil},
		{"cyrillic homoglyph", "gооd.localhost", nil}, // two Cyrillic о
		{"IDN", "bücher.localhost", nil},
		{"right-to-left override", "\u202egood.localhost", nil},
		{"zero-width space", "go\u200bod.localhost", nil},
		{"fullwidth", "ｇood.localhost", nil},
		{"path traversal", "../../hosts/evil", nil},
		{"absolute traversal", "/../../etc/passwd", nil},
		{"dot segment", "/a/./b", nil},
		{"dotdot", "..", nil},
		{"slash", "a/b", []Field{Image}},
		{"oversized", strings.Repeat("a", 100<<10), nil},
		{"oversized path", "/" + strings.Repeat("a", 100<<10), nil},
		{"long label", label(64, 'g') + ".localhost", []Field{Service, Name, Image}},
		{"DNS-valid 111 bytes", Long111, []Field{Host, Service, Name, Image}},
		{"DNS-valid 253 bytes", Long253, []Field{Host, Name, Image}},
		{"trailing dot", "a.localhost.", []Field{Service, Name, Image}},
		{"leading hyphen", "-a.localhost", nil},
		{"empty label", "a..localhost", []Field{Service, Name}},
		{"wildcard in the middle", "a.*.localhost", nil},
		{"regex with a block", "~^a{2}$", nil},
		{"regex with a space", "~^a b$", nil},
		{"regex not compiling", "~^(a$", nil},
		{"regex trailing backslash", `~^a\`, nil},
		{"location modifier", "~ /admin", nil},
		{"exact modifier", "= /", nil},
		{"negative port", "-1", nil},
		{"port zero", "0", []Field{Service, Name, Image}},
		{"port too big", "65536", []Field{Service, Name, Image}},
		{"port with semicolon", "80;", nil},
		{"proto semicolon", "http;", nil},
		{"proto unknown", "gopher", []Field{Host, Service, Name, Image}},
	}
}
