package env_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/env"
)

func TestMapping(t *testing.T) {
	tests := []struct{ key, name string }{
		{"/app/db/port", "APP_DB_PORT"},
		{"/app", "APP"},
		{"/database/host", "DATABASE_HOST"},
	}
	for _, tt := range tests {
		if got := env.VarName(tt.key); got != tt.name {
			t.Errorf("VarName(%q) = %q, want %q", tt.key, got, tt.name)
		}
		if got := env.Key(tt.name); got != tt.key {
			t.Errorf("Key(%q) = %q, want %q", tt.name, got, tt.key)
		}
	}
}

func TestGetAndList(t *testing.T) {
	s := env.New([]string{
		"APP_DB_PORT=5432",
		"APP_DB_HOST=db.local",
		"APP_DBX=other",
		"APP_NAME=web",
		"APP_DB_PORT=ignored duplicate",
		"app_name=lower case loses to APP_NAME",
		"EMPTY=",
		"HOME=/root",
		"NOEQUALS",
		"WITH_EQUALS=a=b",
	})
	defer s.Close()
	ctx := t.Context()

	gets := []struct {
		key, want string
		missing   bool
	}{
		{key: "/app/db/port", want: "5432"},
		{key: "/with/equals", want: "a=b"},
		{key: "/empty", want: ""},
		{key: "/app/db", missing: true},
		{key: "/noequals", missing: true},
	}
	for _, g := range gets {
		kv, err := s.Get(ctx, g.key)
		if g.missing {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q) = %+v, %v; want ErrNotFound", g.key, kv, err)
			}
			continue
		}
		if err != nil || string(kv.Value) != g.want || kv.Key != g.key || kv.ModRevision != 1 {
			t.Errorf("Get(%q) = %+v, %v; want %q at revision 1", g.key, kv, err, g.want)
		}
	}

	lists := []struct {
		prefix string
		want   []string // key=value
	}{
		// confd: every variable whose name starts with APP_DB, so APP_DBX too.
		{"/app/db", []string{"/app/db/host=db.local", "/app/db/port=5432", "/app/dbx=other"}},
		{"/app/db/", []string{"/app/db/host=db.local", "/app/db/port=5432"}},
		{"/app/name", []string{"/app/name=web"}},
		{"/nothing", nil},
		// Everything; app_name and APP_NAME both list as /app/name: the
		// variable named like the key wins.
		{"/", []string{"/app/db/host=db.local", "/app/db/port=5432", "/app/dbx=other", "/app/name=web",
			"/empty=", "/home=/root", "/with/equals=a=b"}},
	}
	for _, l := range lists {
		kvs, rev, err := s.List(ctx, l.prefix)
		if err != nil || rev != 1 {
			t.Fatalf("List(%q): revision %d, %v", l.prefix, rev, err)
		}
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key+"="+string(kv.Value))
		}
		if !reflect.DeepEqual(got, l.want) {
			t.Errorf("List(%q) = %q, want %q", l.prefix, got, l.want)
		}
	}
}

func TestReadOnly(t *testing.T) {
	s := env.New(nil)
	defer s.Close()
	ctx := t.Context()
	calls := map[string]error{}
	_, calls["put"] = s.Put(ctx, "/a", []byte("1"))
	_, calls["delete"] = s.Delete(ctx, "/a")
	_, calls["txn"] = s.Txn(ctx, store.Put("/a", nil))
	for op, err := range calls {
		if !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("%s: %v, want ErrReadOnly", op, err)
		}
	}
}

func TestWatchStaysOpenUntilCancelOrClose(t *testing.T) {
	s := env.New([]string{"A=1"})
	ctx, cancel := context.WithCancel(t.Context())
	ch := s.Watch(ctx, "/", 0)
	select {
	case resp, ok := <-ch:
		t.Fatalf("watch delivered %+v (open %v); the environment does not change", resp, ok)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if resp, ok := <-ch; ok {
		t.Fatalf("cancelled watch delivered %+v; want the channel closed", resp)
	}

	ch = s.Watch(t.Context(), "/", 0)
	s.Close()
	resp, ok := <-ch
	if !ok || !errors.Is(resp.Err, store.ErrClosed) {
		t.Fatalf("watch after Close: %+v (open %v), want a final ErrClosed", resp, ok)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel open after the final response")
	}
	if _, err := s.Get(t.Context(), "/a"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("get after Close: %v, want ErrClosed", err)
	}
}
