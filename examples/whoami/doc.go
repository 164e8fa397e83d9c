// Command whoami is the HTTP server berth's tests and examples run inside
// containers: it answers every request with its name (WHOAMI_NAME, else the
// hostname). "whoami -check URL" exits 0 when URL answers 200, for health
// checks in images that have no shell.
package main
