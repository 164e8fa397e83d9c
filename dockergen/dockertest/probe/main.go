// Command probe is the program in the Docker test image of berth's
// docker-gen tests. It serves HTTP on :8080:
//
//	GET /        its name (PROBE_NAME, else the hostname)
//	GET /hups    how many SIGHUPs it has received
//	GET /id      the ID of its container, found as docker-gen finds it
//	GET /file?path=/proc/self/cgroup   a file's content
//
// SIGTERM and SIGINT end it at once.
package main

import (
	"cmp"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/berthd/berth/dockergen/internal/selfid"
)

func main() {
	var hups atomic.Int64
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			if s != syscall.SIGHUP {
				os.Exit(0)
			}
			fmt.Printf("SIGHUP %d\n", hups.Add(1))
		}
	}()
	host, _ := os.Hostname()
	name := cmp.Or(os.Getenv("PROBE_NAME"), host)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, name) })
	http.HandleFunc("/hups", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, hups.Load()) })
	http.HandleFunc("/id", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, selfid.Current()) })
	http.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	fmt.Fprintf(os.Stderr, "probe %s listening on :8080\n", name)
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
