package consul

import (
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/store"
)

// TestDecodeEntries: Consul's answer is input like any other; a broken or
// hostile one is an error naming the entry and field, and an entry whose
// key and ModifyIndex are unchanged keeps the previous value (it is not
// decoded again).
func TestDecodeEntries(t *testing.T) {
	tests := []struct {
		name, body string
		want       []store.KV
		err        string
	}{
		{name: "empty", body: `[]`, want: []store.KV{}},
		{name: "values", body: `[{"Key":"a","Value":"eDE=","ModifyIndex":5},{"Key":"b","Value":null,"ModifyIndex":6}]`,
			want: []store.KV{{Key: "/a", Value: []byte("x1"), ModRevision: 5}, {Key: "/b", ModRevision: 6}}},
		{name: "unsorted", body: `[{"Key":"b","Value":"eQ==","ModifyIndex":2},{"Key":"a","Value":"eA==","ModifyIndex":1}]`,
			want: []store.KV{{Key: "/a", Value: []byte("x"), ModRevision: 1}, {Key: "/b", Value: []byte("y"), ModRevision: 2}}},
		{name: "not an array", body: `{"Key":"a"}`, err: "not a JSON array of KV entries"},
		{name: "garbage", body: `[{"Key":"a",`, err: "not a JSON array of KV entries"},
		{name: "no key", body: `[{"Value":"eA==","ModifyIndex":1}]`, err: "entry 0: no Key"},
		{name: "empty key", body: `[{"Key":"","ModifyIndex":1}]`, err: "entry 0: no Key"},
		{name: "no index", body: `[{"Key":"a","Value":"eA=="}]`, err: `entry 0 (key "a"): no ModifyIndex`},
		{name: "not base64", body: `[{"Key":"a","Value":"!!!","ModifyIndex":1}]`, err: `entry 0 (key "a"): Value: not base64`},
		{name: "not a string", body: `[{"Key":"a","Value":12,"ModifyIndex":1}]`, err: `entry 0 (key "a"): Value: not a base64 string`},
		{name: "escaped string", body: `[{"Key":"a","Value":"eA\u003d=","ModifyIndex":1}]`, err: `Value: not a base64 string`},
		{name: "listed twice", body: `[{"Key":"a","Value":"eA==","ModifyIndex":1},{"Key":"a","Value":"eQ==","ModifyIndex":2}]`, err: `key "a": listed twice`},
		{name: "listed twice unsorted", body: `[{"Key":"b","ModifyIndex":1},{"Key":"a","ModifyIndex":1},{"Key":"b","ModifyIndex":2}]`, err: `key "b": listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeEntries([]byte(tt.body), nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to say %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d KVs, want %d: %v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i].Key != tt.want[i].Key || string(got[i].Value) != string(tt.want[i].Value) || got[i].ModRevision != tt.want[i].ModRevision {
					t.Errorf("KV %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestDecodeEntriesReuses: an unchanged entry keeps the base's KV (its
// value's bytes are the same slice, not decoded again); a changed
// ModifyIndex is decoded anew.
func TestDecodeEntriesReuses(t *testing.T) {
	base, err := decodeEntries([]byte(`[{"Key":"a","Value":"eA==","ModifyIndex":1},{"Key":"b","Value":"eQ==","ModifyIndex":2}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	// a's Value in the new answer differs but its index does not: the
	// index is Consul's word that it is the same revision, so the old
	// bytes are kept; b's index moved, so its new value is decoded.
	got, err := decodeEntries([]byte(`[{"Key":"a","Value":"ego=","ModifyIndex":1},{"Key":"b","Value":"eg==","ModifyIndex":3}]`), base)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0].Value[0] != &base[0].Value[0] || string(got[0].Value) != "x" {
		t.Errorf("a was decoded again: %q", got[0].Value)
	}
	if string(got[1].Value) != "z" || got[1].ModRevision != 3 {
		t.Errorf("b = %+v, want z at 3", got[1])
	}
}

// TestScopeOf: berth's own reads carry the datacenter, namespace and
// partition the client library gives its writes.
func TestScopeOf(t *testing.T) {
	got := scopeOf(&api.Config{Datacenter: "dc2", Namespace: "team", Partition: "p1"}).Encode()
	if want := "dc=dc2&ns=team&partition=p1"; got != want {
		t.Errorf("scope %q, want %q", got, want)
	}
	if got := scopeOf(&api.Config{}).Encode(); got != "" {
		t.Errorf("empty config: scope %q, want none", got)
	}
}
