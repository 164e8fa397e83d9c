package testenv

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
)

// HTTPBackend serves HTTP on a free loopback port until the test ends. It
// answers every request with its name, followed by the X-Forwarded-Host a
// proxy set (if any): enough to see which backend a proxy reached and what
// it passed on. It returns the address to register.
func HTTPBackend(t testing.TB, name string) (ip string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, strings.TrimSpace(name+" "+r.Header.Get("X-Forwarded-Host")))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	a := l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}
