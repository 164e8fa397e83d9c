// Package selfid finds the ID of the Docker container the process runs in,
// the way docker-gen does for $.Docker.CurrentContainerID: the files
// /proc/1/cpuset, /proc/self/cgroup and /proc/self/mountinfo are read line
// by line, first for a 64-character ID that starts with $HOSTNAME (when
// that is a 12-character short ID), then for any 64-character ID.
//
// One deliberate difference: on a mountinfo line docker-gen takes any ID
// after "containers/", so on a host (outside any container) where a
// container with shareable IPC runs, the host's
// /var/lib/docker/containers/<id>/mounts/shm line makes docker-gen believe
// it runs in that container. berth takes only the line of the bind mount
// Docker gives every container as /etc/hostname
// (/var/lib/docker/containers/<id>/hostname).
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
	contents := make([][]byte, len(Files))
	for i, f := range Files {
		contents[i], _ = os.ReadFile(f) // unreadable: skipped, as docker-gen does
	}
	return Lookup(os.Getenv("HOSTNAME"), contents...)
}

// Lookup applies the search to the contents of the files, in order, with
// hostname as $HOSTNAME.
func Lookup(hostname string, contents ...[]byte) string {
	if shortID.MatchString(hostname) {
		if id := search(contents, regexp.QuoteMeta(hostname)+`[[:alnum:]]{52}`); id != "" {
			return id
		}
	}
	return search(contents, `[[:alnum:]]{64}`)
}

// search returns the first match of pattern (a 64-character ID) on any
// line of contents; on a mountinfo line, only in the hostname bind mount's
// source.
func search(contents [][]byte, pattern string) string {
	plain := regexp.MustCompile(`(` + pattern + `)`)
	mount := regexp.MustCompile(`^[0-9]+ [0-9]+ [0-9]+:[0-9]+ \S*containers/(` + pattern + `)/hostname /etc/hostname `)
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
