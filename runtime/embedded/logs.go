package embedded

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
)

// A container writes its stdout and stderr straight into files (never
// pipes, so it survives the daemon); a tailer turns what they gain into
// timestamped lines in container.log, remembering how far it read in
// log.offsets so a restarted daemon continues where the last one stopped.
type tailer struct {
	dir     string
	maxSize int64 // rotate container.log beyond this
	mu      sync.Mutex
}

// LogLine is one line of container output.
type LogLine = runtime.LogLine

// streamName names the two raw output files, by index.
func streamName(i int) string { return [2]string{"stdout", "stderr"}[i] }

const (
	maxPartial = 16 << 10 // a line longer than this is cut
	maxLogSize = 16 << 20 // container.log is rotated to container.log.1 beyond this
)

func newTailer(dir string) *tailer { return &tailer{dir: dir, maxSize: maxLogSize} }

func (t *tailer) rawPath(i int) string { return filepath.Join(t.dir, streamName(i)+".raw") }
func (t *tailer) logPath() string      { return filepath.Join(t.dir, "container.log") }

// openRaw opens the raw output files for a container process to inherit.
func (t *tailer) openRaw() (stdout, stderr *os.File, err error) {
	var f [2]*os.File
	for i := range f {
		f[i], err = os.OpenFile(t.rawPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			if i == 1 {
				f[0].Close()
			}
			return nil, nil, fmt.Errorf("container log: %w", err)
		}
	}
	return f[0], f[1], nil
}

// follow syncs every 200ms until ctx ends.
func (t *tailer) follow(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = t.sync(false)
			return
		case <-tick.C:
			_ = t.sync(false)
		}
	}
}

// sync moves new complete lines (all remaining bytes when final) from the
// raw files to container.log.
func (t *tailer) sync(final bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var off [2]int64
	if b, err := os.ReadFile(filepath.Join(t.dir, "log.offsets")); err == nil {
		_ = json.Unmarshal(b, &off)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	now := time.Now().UTC()
	moved := false
	for i := range 2 {
		f, err := os.Open(t.rawPath(i))
		if err != nil {
			continue
		}
		if _, err := f.Seek(off[i], io.SeekStart); err != nil {
			f.Close()
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(f, 8<<20))
		f.Close()
		for len(data) > 0 {
			n := bytes.IndexByte(data, '\n') + 1
			if n == 0 {
				if !final && len(data) < maxPartial {
					break
				}
				n = min(len(data), maxPartial)
			}
			_ = enc.Encode(LogLine{Time: now, Stream: streamName(i), Line: string(data[:n])})
			off[i] += int64(n)
			data = data[n:]
			moved = true
		}
	}
	if !moved {
		return nil
	}
	if fi, err := os.Stat(t.logPath()); err == nil && fi.Size()+int64(out.Len()) > t.maxSize {
		if err := os.Rename(t.logPath(), t.logPath()+".1"); err != nil {
			return err
		}
	}
	lf, err := os.OpenFile(t.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = lf.Write(out.Bytes())
	if cerr := lf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(off)
	if err := os.WriteFile(filepath.Join(t.dir, "log.offsets"), b, 0o600); err != nil {
		return err
	}
	// Free the disk space of what was moved; offsets (and the container's
	// appends) are unaffected by a hole.
	for i := range 2 {
		if end := off[i] &^ 4095; end > 0 {
			if f, err := os.OpenFile(t.rawPath(i), os.O_WRONLY, 0); err == nil {
				_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, end)
				f.Close()
			}
		}
	}
	return nil
}

// LogOptions selects what Logs returns.
type LogOptions = runtime.LogOptions

// Logs sends the container's output lines to fn in order.
func (r *Runtime) Logs(ctx context.Context, ref string, opts LogOptions, fn func(LogLine) error) error {
	c, err := r.lookup(ref)
	if err != nil {
		return err
	}
	if opts.Follow {
		r.mu.Lock()
		c.holds++ // an AutoRemove container's output is read to the end
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			c.holds--
			r.mu.Unlock()
		}()
	}
	_ = c.logs.sync(false)
	var lines []LogLine
	if f, err := os.Open(c.logs.logPath() + ".1"); err == nil {
		lines = readLogLines(newLogReader(f), lines)
		f.Close()
	}
	f, err := os.Open(c.logs.logPath())
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var rd *logReader
	if f != nil {
		rd = newLogReader(f)
		lines = readLogLines(rd, lines)
	}
	if opts.Tail > 0 && len(lines) > opts.Tail {
		lines = lines[len(lines)-opts.Tail:]
	}
	for _, l := range lines {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		r.mu.Lock()
		running := c.run != nil || c.pending != nil
		r.mu.Unlock()
		_ = c.logs.sync(!running)
		for {
			if rd != nil {
				for _, l := range readLogLines(rd, nil) {
					if err := fn(l); err != nil {
						return err
					}
				}
			}
			// Rotated (or created) since we opened it: go on with the new file.
			nf, err := os.Open(c.logs.logPath())
			if err != nil {
				break
			}
			if f != nil && sameFile(f, nf) {
				nf.Close()
				break
			}
			if f != nil {
				f.Close()
			}
			f, rd = nf, newLogReader(nf)
		}
		if !running {
			return nil
		}
	}
}

func sameFile(a, b *os.File) bool {
	ai, err1 := a.Stat()
	bi, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(ai, bi)
}

// logReader reads complete JSON lines, keeping a partly written last line
// until the rest of it arrives.
type logReader struct {
	rd      *bufio.Reader
	partial []byte
}

func newLogReader(f *os.File) *logReader { return &logReader{rd: bufio.NewReader(f)} }

// readLogLines appends every complete line lr has to lines.
func readLogLines(lr *logReader, lines []LogLine) []LogLine {
	for {
		b, err := lr.rd.ReadBytes('\n')
		lr.partial = append(lr.partial, b...)
		if err != nil {
			return lines // EOF: lr.partial waits for its newline
		}
		var l LogLine
		if json.Unmarshal(lr.partial, &l) == nil {
			lines = append(lines, l)
		}
		lr.partial = lr.partial[:0]
	}
}
