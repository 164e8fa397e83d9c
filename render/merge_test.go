package render

import (
	"slices"
	"testing"

	"github.com/berthd/berth/store"
)

// TestMergeKVs: listings merge sorted, each key once; a single sorted
// listing beside empty ones (a template's prefix plus a certificate
// source without keys) is returned as it is, not copied and sorted.
func TestMergeKVs(t *testing.T) {
	a := []store.KV{{Key: "/a"}, {Key: "/b"}, {Key: "/c"}}
	tests := []struct {
		name  string
		lists [][]store.KV
		want  []string
		same  bool // the result is lists[0] itself
	}{
		{"one sorted", [][]store.KV{a}, []string{"/a", "/b", "/c"}, true},
		{"sorted and empty", [][]store.KV{a, nil, {}}, []string{"/a", "/b", "/c"}, true},
		{"overlapping", [][]store.KV{a, {{Key: "/b"}, {Key: "/0"}}}, []string{"/0", "/a", "/b", "/c"}, false},
		{"unsorted", [][]store.KV{{{Key: "/z"}, {Key: "/y"}}, nil}, []string{"/y", "/z"}, false},
		{"all empty", [][]store.KV{nil, {}}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MergeKVs(tt.lists...)
			var keys []string
			for _, kv := range got {
				keys = append(keys, kv.Key)
			}
			if !slices.Equal(keys, tt.want) {
				t.Fatalf("keys %q, want %q", keys, tt.want)
			}
			if tt.same && &got[0] != &a[0] {
				t.Fatal("the one sorted listing was copied")
			}
		})
	}
}
