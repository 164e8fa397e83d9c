// Package readme runs the README's recipes as a test: the fenced sh and
// toml blocks marked <!-- recipe: NAME [file=PATH] --> are run as written,
// in document order (toml blocks saved to PATH), as root in private
// mount, network and pid namespaces made to look like a fresh Debian
// machine (sandbox.sh), against real nginx, berth up with the embedded
// runtime, real containers and curl. A marked recipe the test does not
// know, or a known one missing from the README, fails it; so does a toml
// block of the README or docs/ that berth's loader refuses, a key of
// berth.toml that docs/configuration.md does not name, and a top-level
// package the README's Layout does not list.
//
//	CGO_ENABLED=1 go test -tags seccomp -count=1 -v ./examples/readme
package readme
