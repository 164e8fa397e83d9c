package consul_test

import (
	"fmt"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/consul"
)

// BenchmarkPutToEvent measures the time from a put to its watch event: a
// blocking query returning, the prefix read again and diffed.
func BenchmarkPutToEvent(b *testing.B) {
	agent := testenv.StartConsul(b)
	s, err := consul.New(b.Context(), consul.Config{Address: agent.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	_, rev, err := s.List(b.Context(), "/bench/")
	if err != nil {
		b.Fatal(err)
	}
	ch := s.Watch(b.Context(), "/bench/", rev)
	i := 0
	for b.Loop() {
		i++
		key := fmt.Sprintf("/bench/%06d", i)
		if _, err := s.Put(b.Context(), key, []byte("x")); err != nil {
			b.Fatal(err)
		}
		for seen := false; !seen; {
			resp := <-ch
			if resp.Err != nil {
				b.Fatal(resp.Err)
			}
			for _, ev := range resp.Events {
				seen = seen || ev.KV.Key == key
			}
		}
	}
}

// BenchmarkList10000 measures a consistent List of 10,000 keys.
func BenchmarkList10000(b *testing.B) {
	agent := testenv.StartConsul(b)
	s, err := consul.New(b.Context(), consul.Config{Address: agent.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var ops []store.Op
	for i := range 10000 {
		ops = append(ops, store.Put(fmt.Sprintf("/list/svc%02d/host/%05d", i%50, i), []byte(`{"ip":"10.1.2.3","port":8080}`)))
		if len(ops) == 128 || i == 9999 {
			if _, err := s.Txn(b.Context(), ops...); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	for b.Loop() {
		kvs, _, err := s.List(b.Context(), "/list/")
		if err != nil || len(kvs) != 10000 {
			b.Fatalf("list: %d keys, %v", len(kvs), err)
		}
	}
}
