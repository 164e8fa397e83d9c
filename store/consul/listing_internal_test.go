package consul

import (
	"encoding/base64"
	"fmt"
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
		{name: "other fields", body: `[{"LockIndex":0,"Key":"a","Flags":0,"Value":"eDE=","CreateIndex":4,"ModifyIndex":5,"Session":"s"}]`,
			want: []store.KV{{Key: "/a", Value: []byte("x1"), ModRevision: 5}}},
		{name: "escaped key", body: `[{"Key":"a\u003cb","Value":"eDE=","ModifyIndex":5}]`,
			want: []store.KV{{Key: "/a<b", Value: []byte("x1"), ModRevision: 5}}},
		{name: "not an array", body: `{"Key":"a"}`, err: "not a JSON array of KV entries"},
		{name: "null", body: `null`, err: "not a JSON array of KV entries"},
		{name: "empty body", body: ``, err: "not a JSON array of KV entries"},
		{name: "data after", body: `[] []`, err: "data after the array"},
		{name: "not an object", body: `[1]`, err: "entry 0"},
		{name: "key not a string", body: `[{"Key":12,"ModifyIndex":1}]`, err: "entry 0: Key"},
		{name: "null key", body: `[{"Key":null,"ModifyIndex":1}]`, err: "entry 0: no Key"},
		{name: "null index", body: `[{"Key":"a","ModifyIndex":null}]`, err: `entry 0 (key "a"): no ModifyIndex`},
		{name: "index not a number", body: `[{"Key":"a","ModifyIndex":"1"}]`, err: `entry 0 (key "a"): ModifyIndex`},
		{name: "negative index", body: `[{"Key":"a","ModifyIndex":-1}]`, err: `entry 0 (key "a"): ModifyIndex`},
		{name: "second entry keeps no field of the first", body: `[{"Key":"a","Value":"eA==","ModifyIndex":1},{"Key":"b"}]`, err: `entry 1 (key "b"): no ModifyIndex`},
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
			got, err := decodeEntries(strings.NewReader(tt.body), nil)
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
	base, err := decodeEntries(strings.NewReader(`[{"Key":"a","Value":"eA==","ModifyIndex":1},{"Key":"b","Value":"eQ==","ModifyIndex":2}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	// a's Value in the new answer differs but its index does not: the
	// index is Consul's word that it is the same revision, so the old
	// bytes are kept; b's index moved, so its new value is decoded.
	got, err := decodeEntries(strings.NewReader(`[{"Key":"a","Value":"ego=","ModifyIndex":1},{"Key":"b","Value":"eg==","ModifyIndex":3}]`), base)
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

// TestIsLoopback: the agent addresses answered uncompressed are this
// machine's.
func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8500": true, "127.3.4.5:1": true, "[::1]:8500": true, "localhost:8500": true,
		"LocalHost:8500": true, "localhost": true, "127.0.0.1": true,
		"10.0.0.1:8500": false, "consul.service:8500": false, "[2001:db8::1]:8500": false, "": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// BenchmarkDecodeEntries decodes a 10,000-key answer of the peer
// workload, from nothing (a List) and against the previous state with one
// key changed (a watch's blocking answer).
func BenchmarkDecodeEntries(b *testing.B) {
	var body strings.Builder
	body.WriteString("[")
	for i := range 10000 {
		if i > 0 {
			body.WriteString(",")
		}
		v := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, `{"host":"127.0.%d.%d","port":8080}`, i/256%256, i%256))
		fmt.Fprintf(&body, `{"LockIndex":0,"Key":"services/svc-%04d/i-%06d","Flags":0,"Value":%q,"CreateIndex":%d,"ModifyIndex":%d}`, i/10, i, v, i+10, i+10)
	}
	body.WriteString("]")
	text := body.String()
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEntries(strings.NewReader(text), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("against-base", func(b *testing.B) {
		base, err := decodeEntries(strings.NewReader(text), nil)
		if err != nil {
			b.Fatal(err)
		}
		base[5000].ModRevision-- // one key changed
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEntries(strings.NewReader(text), base); err != nil {
				b.Fatal(err)
			}
		}
	})
}
