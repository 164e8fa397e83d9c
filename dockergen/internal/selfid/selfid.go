// Package selfid finds the ID of the Docker container the process runs in
// exactly the way docker-gen does (for $.Docker.CurrentContainerID): the
// files /proc/1/cpuset, /proc/self/cgroup and /proc/self/mountinfo are read
// line by line, first for a 64-character ID that starts with $HOSTNAME (when
// that is a 12-character short ID), then for any 64-character ID. On a
// mountinfo line only an ID right after "containers/" counts (Docker's
// /var/lib/docker/containers/<id>/hostname, resolv.conf and hosts bind
// mounts), so the overlay layer IDs on the same lines are never taken.
package selfid

import (
	"bufio"
	"bytes"
	"os"
	"regexp"
)

// Files are the files docker-gen reads, in its order.
var Files = []string{"/proc/1/cpuset", "/proc/self/cgroup", "/proc/self/mountinfo"}

var (
	shortID       = regexp.MustCompile(`^[[:alnum:]]{12}$`)
	mountinfoLine = regexp.MustCompile(`^[0-9]+ [0-9]+ [0-9]+:[0-9]+ /`)
)

// Current returns the ID of the container the process runs in, "" when it
// runs in none (or the files name none).
func Current() string {
	var contents [][]byte
	for _, f := range Files {
		b, _ := os.ReadFile(f) // unreadable: skipped, as docker-gen does
		contents = append(contents, b)
	}
	return Lookup(os.Getenv("HOSTNAME"), contents...)
}

// Lookup applies docker-gen's search to the contents of the files, in
// order, with hostname as $HOSTNAME.
func Lookup(hostname string, contents ...[]byte) string {
	if shortID.MatchString(hostname) {
		if id := search(contents, regexp.QuoteMeta(hostname)+`[[:alnum:]]{52}`); id != "" {
			return id
		}
	}
	return search(contents, `[[:alnum:]]{64}`)
}

// search returns the first match of pattern (a 64-character ID) on any
// line of contents, after "containers/" on mountinfo lines.
func search(contents [][]byte, pattern string) string {
	plain := regexp.MustCompile(`(` + pattern + `)`)
	mount := regexp.MustCompile(`containers/(` + pattern + `)`)
	for _, c := range contents {
		s := bufio.NewScanner(bytes.NewReader(c))
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			line := s.Bytes()
			re := plain
			if mountinfoLine.Match(line) {
				re = mount
			}
			if m := re.FindSubmatch(line); m != nil {
				return string(m[1])
			}
		}
	}
	return ""
}
