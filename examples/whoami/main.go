package main

import (
	"cmp"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":"+cmp.Or(os.Getenv("PORT"), "8080"), "address to listen on")
	check := flag.String("check", "", "exit 0 if this URL answers 200, else 1")
	flag.Parse()
	if *check != "" {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(*check)
		if err != nil || resp.StatusCode != http.StatusOK {
			os.Exit(1)
		}
		os.Exit(0)
	}
	host, _ := os.Hostname()
	name := cmp.Or(os.Getenv("WHOAMI_NAME"), host)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n", name)
	})
	// WHOAMI_LINGER: on SIGTERM keep serving this long before exiting, as
	// a server finishing its requests does (tests of draining use it).
	if d, err := time.ParseDuration(os.Getenv("WHOAMI_LINGER")); err == nil && d > 0 {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			<-term
			fmt.Fprintf(os.Stderr, "whoami %s: SIGTERM, exiting in %s\n", name, d)
			time.Sleep(d)
			os.Exit(0)
		}()
	}
	fmt.Fprintf(os.Stderr, "whoami %s listening on %s\n", name, *listen)
	if err := http.ListenAndServe(*listen, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
