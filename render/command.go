package render

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// DefaultTimeout bounds every external command whose Spec sets no timeout.
const DefaultTimeout = 30 * time.Second

// Commander runs one external command and returns its combined output. It is
// the one seam between berth and the programs it drives (check and reload
// commands); ctx bounds the command's life.
type Commander interface {
	Run(ctx context.Context, argv []string) ([]byte, error)
}

// Exec is the real Commander. It starts each command in its own process
// group and, when ctx ends, kills the whole group, so a shell that forked a
// hanging child cannot outlive its timeout.
type Exec struct {
	// WaitDelay is how long Run waits for the output pipes to close after
	// the command exited or its group was killed (0: one second).
	WaitDelay time.Duration
}

// Run implements Commander. The error, if any, carries the combined output.
func (e Exec) Run(ctx context.Context, argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group id is the leader's pid; kill every member.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = e.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = time.Second
	}
	out := &tailBuffer{max: maxCommandOutput}
	cmd.Stdout = out
	cmd.Stderr = out
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil && cmd.ProcessState.Success() {
		// The command succeeded; something it started in the background
		// (a daemon, "cmd &") still holds its output open. Not a failure.
		err = nil
	}
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return out.Bytes(), err
}

// maxCommandOutput bounds what a command's output costs: its last 64 KiB
// are kept (where the error message is), the rest is dropped.
const maxCommandOutput = 64 << 10

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max     int
	buf     []byte
	dropped bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.dropped = true
	}
	return n, nil
}

// Bytes returns the kept output, marked when its start was dropped.
func (b *tailBuffer) Bytes() []byte {
	if b.dropped {
		return append([]byte("[earlier output dropped]\n"), b.buf...)
	}
	return b.buf
}

// command is one check or reload command of a Spec, before expansion.
type command struct {
	what    string // "check" or "reload", for errors and logs
	text    string // shell command; may contain {{.src}}
	timeout time.Duration
}

// expand substitutes {{.src}}, as confd does for check_cmd: the command text
// is a Go template whose only data is src.
func (c command) expand(src string) (string, error) {
	if !strings.Contains(c.text, "{{") {
		return c.text, nil
	}
	t, err := template.New(c.what).Option("missingkey=error").Parse(c.text)
	if err != nil {
		return "", fmt.Errorf("%s command %q: %w", c.what, c.text, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]string{"src": src}); err != nil {
		return "", fmt.Errorf("%s command %q: %w", c.what, c.text, err)
	}
	return b.String(), nil
}

// ValidateCommand reports whether a check or reload command (what names
// which, for the error) expands: its only template data is {{.src}}.
// Configuration loaders call it so that a typo is a configuration error,
// not a failure at the first render.
func ValidateCommand(what, text string) error {
	_, err := command{what: what, text: text}.expand("/dev/null")
	return err
}

// run executes an expanded command through /bin/sh -c with the command's
// timeout. The error names the command and holds its combined output.
func run(ctx context.Context, c Commander, what, line string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := c.Run(ctx, []string{"/bin/sh", "-c", line})
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	// One line of output, so that joined errors stay readable.
	return &CommandError{What: what, Line: line, Err: err, Output: strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " | ")}
}

// CommandError is a check or reload command that failed. Callers tell
// the two apart (metrics, alerts) with errors.As.
type CommandError struct {
	What   string // "check" or "reload"
	Line   string // the command as run
	Err    error  // its exit status, timeout or start failure
	Output string // the tail of what it printed, on one line
}

func (e *CommandError) Error() string {
	if e.Output != "" {
		return fmt.Sprintf("%s %q: %v: %s", e.What, e.Line, e.Err, e.Output)
	}
	return fmt.Sprintf("%s %q: %v", e.What, e.Line, e.Err)
}

func (e *CommandError) Unwrap() error { return e.Err }
