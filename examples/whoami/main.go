package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() { os.Exit(run()) }

func run() int {
	listen := flag.String("listen", ":"+cmp.Or(os.Getenv("PORT"), "8080"), "address to listen on")
	check := flag.String("check", "", "exit 0 if this URL answers 200, else 1")
	flag.Parse()
	if *check != "" {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(*check)
		if err != nil || resp.StatusCode != http.StatusOK {
			return 1
		}
		return 0
	}
	host, _ := os.Hostname()
	name := cmp.Or(os.Getenv("WHOAMI_NAME"), host)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n", name)
	})
	srv := &http.Server{Addr: *listen, Handler: mux}
	// SIGTERM (a stop) and SIGINT end the server cleanly with status 0.
	// Without a handler Go's runtime dies of the signal, and as a
	// container's pid 1, which the kernel spares from default-action
	// signals, it exits 2 instead.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	// WHOAMI_LINGER: on SIGTERM keep serving this long before exiting, as
	// a server finishing its requests does (tests of draining use it).
	linger, _ := time.ParseDuration(os.Getenv("WHOAMI_LINGER"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		sig := <-stop
		if linger > 0 {
			fmt.Fprintf(os.Stderr, "whoami %s: %s, exiting in %s\n", name, sig, linger)
			time.Sleep(linger)
		} else {
			fmt.Fprintf(os.Stderr, "whoami %s: %s, exiting\n", name, sig)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Fprintf(os.Stderr, "whoami %s listening on %s\n", name, *listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-done
	return 0
}
