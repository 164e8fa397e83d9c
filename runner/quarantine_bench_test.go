package runner

import (
	"log/slog"
	"testing"
)

// BenchmarkQuarantineRevert is what a quarantine costs every render while
// it holds keys: reverting 3 quarantined keys in a snapshot of 10,000.
func BenchmarkQuarantineRevert(b *testing.B) {
	good := kvs(10000, "v1")
	cur := kvs(10000, "v1", 10, 5000, 9999)
	log := slog.New(slog.DiscardHandler)
	q := quarantine{}
	for _, i := range []int{10, 5000, 9999} {
		q[cur[i].Key] = &entry{change: change{key: cur[i].Key, kv: cur[i]}}
	}
	b.ReportAllocs()
	for b.Loop() {
		if out := q.revert(cur, good, log); len(out) != len(cur) {
			b.Fatal(len(out))
		}
	}
}

// BenchmarkQuarantineDiff is the diff a search starts with: 10,000 keys
// against the last good 10,000, 100 of them changed.
func BenchmarkQuarantineDiff(b *testing.B) {
	good := kvs(10000, "v1")
	cur := kvs(10000, "v1")
	for i := 0; i < len(cur); i += 100 {
		cur[i].Value = []byte("v2")
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := diff(good, cur); len(d) != 100 {
			b.Fatal(len(d))
		}
	}
}
