package render

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// guardCount applies min_entries and max_shrink to a job counting n
// records. max_shrink compares with the last good render of the
// destination: remembered in memory, and beside the destination
// (countPath) so that it holds across a restart too: a daemon that comes
// back after an outage in which its hosts' leases expired must not empty
// the proxy on its first render.
func (r *Renderer) guardCount(job Job, n int) error {
	s := job.Spec
	if s.MinEntries > 0 && n < s.MinEntries {
		return fmt.Errorf("%s: %w: %d records, min_entries is %d", s.name(), ErrRefused, n, s.MinEntries)
	}
	if s.MaxShrink <= 0 || job.Force {
		return nil
	}
	prev, ok := r.lastCount(s.Dest)
	if ok && prev > 0 && n < prev && float64(prev-n)/float64(prev) > s.MaxShrink {
		return fmt.Errorf("%s: %w: records dropped from %d to %d, more than max_shrink %g%% (force to apply)",
			s.name(), ErrRefused, prev, n, s.MaxShrink*100)
	}
	return nil
}

// guardEmpty refuses an empty (or white-space only) output over a
// destination that holds more, unless the Spec allows empty output. It
// looks at the destination itself, so it holds after a restart as well.
func guardEmpty(s Spec, cur current, out []byte) error {
	if s.AllowEmpty || len(bytes.TrimSpace(out)) > 0 || len(bytes.TrimSpace(cur.data)) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w: the output is empty and %s is not (allow_empty = true to apply it)", s.name(), ErrRefused, s.Dest)
}

// lastCount is the record count of the last good render of dest: in
// memory, else read from beside dest.
func (r *Renderer) lastCount(dest string) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.counts[dest]; ok {
		return n, true
	}
	b, err := os.ReadFile(countPath(dest))
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, false
	}
	r.counts[dest] = n
	r.saved[dest] = n
	return n, true
}

// remember records the count of a good render for max_shrink; a Spec that
// sets max_shrink also keeps it beside the destination, written when it
// changes.
func (r *Renderer) remember(s Spec, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[s.Dest] = n
	if s.MaxShrink <= 0 {
		return
	}
	if saved, ok := r.saved[s.Dest]; ok && saved == n {
		return
	}
	if err := replace(r.log, countPath(s.Dest), []byte(strconv.Itoa(n)+"\n"), attrs{mode: 0o600, uid: -1, gid: -1}); err != nil {
		r.log.Warn("cannot keep the record count beside the destination; max_shrink starts afresh after a restart", "dest", s.Dest, "err", err)
		return
	}
	r.saved[s.Dest] = n
}

// countPath is the file beside dest holding the record count of its last
// good render. Like the pending-reload marker it is hidden and ends in
// neither the destination's extension nor a staging suffix: include
// globs do not pick it up, sweeps keep it.
func countPath(dest string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".records.berth")
}
