package endpoints_test

import (
	"fmt"
	"testing"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
)

// BenchmarkBuild is Build over 1,000 virtual hosts of one instance each
// plus one host of 20: what a live template pushes on every change.
func BenchmarkBuild(b *testing.B) {
	var ins []records.Instance
	for i := range 1000 {
		ins = append(ins, inst(fmt.Sprintf("s%d", i), "10.0.3.1", 80, vh(fmt.Sprintf("v%d.bench.localhost", i))))
	}
	for i := range 20 {
		ins = append(ins, inst(fmt.Sprintf("c%d", i), fmt.Sprintf("10.0.4.%d", i+1), 80, vh("bench.localhost")))
	}
	b.ReportAllocs()
	for b.Loop() {
		if set, errs := endpoints.Build(ins); len(set.Upstreams) != 1001 || errs != nil {
			b.Fatal(len(set.Upstreams), errs)
		}
	}
}
