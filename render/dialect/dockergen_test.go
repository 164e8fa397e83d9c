package dialect

import (
	"reflect"
	"testing"

	"github.com/berthd/berth/records"
)

// TestDeepGet pins the field-path semantics of where, groupBy and
// sortObjectsByKeys to docker-gen's.
func TestDeepGet(t *testing.T) {
	s := struct{ X string }{"foo"}
	sp := &s
	c := records.Container{ID: "id", Env: map[string]string{"K": "v"}, Addresses: []records.Address{{Port: "80"}}}
	tests := []struct {
		name string
		item any
		path string
		want any
	}{
		{"no path", s, "", s},
		{"field", c, "ID", "id"},
		{"leading dot", c, ".ID", "id"},
		{"map", c, "Env.K", "v"},
		{"missing map key", c, "Env.NOPE", nil},
		{"missing field", c, "Nope", nil},
		{"slice then field", c, "Addresses.0.Port", "80"},
		{"pointer to container", &c, "Env.K", "v"},
		{"empty map keys", map[string]map[string]string{"": {"": "foo"}}, "..", "foo"},
		{"pointer to struct", sp, "X", "foo"},
		{"pointer to pointer", &sp, "X", nil},
		{"slice index", []string{"foo", "bar"}, "1", "bar"},
		{"slice out of bounds", []string{}, "0", nil},
		{"negative index", []string{"a"}, "-1", nil},
		{"index not a number", []string{"a"}, "x", nil},
		{"array index", [2]string{"foo", "bar"}, "1", "bar"},
		{"map with non-string keys", map[int]string{1: "a"}, "1", nil},
		{"into a string", "abc", "x", nil},
	}
	for _, tt := range tests {
		if got := deepGet(tt.item, tt.path); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: deepGet(%v, %q) = %#v, want %#v", tt.name, tt.item, tt.path, got, tt.want)
		}
	}
}

func TestRemoveBlankLines(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"\r\n\r\n", ""},
		{"line1\nline2", "line1\nline2"},
		{"line1\n\nline2", "line1\nline2"},
		{"\n\n\n\nline1\n\nline2", "line1\nline2"},
		{"\n\n  \n \t\n \n", ""},
		{"line1\r\n\r\nline2", "line1\r\nline2"},
		{"line1\n", "line1\n"},
		{"a\n\u0085\u00a0\nb", "a\nb"},
	}
	for _, tt := range tests {
		if got := string(removeBlankLines([]byte(tt.in))); got != tt.want {
			t.Errorf("removeBlankLines(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestListValue(t *testing.T) {
	values := []string{"a", "b"}
	if v, err := listValue("f", &values); err != nil || v.Len() != 2 {
		t.Errorf("pointer to slice: %v, %v", v, err)
	}
	if _, err := listValue("f", "abc"); err == nil {
		t.Error("a string is not a list")
	}
	if _, err := groupBy([]any{map[string]any{"k": 1}}, "k"); err == nil {
		t.Error("groupBy on a non-string value must fail")
	}
}
