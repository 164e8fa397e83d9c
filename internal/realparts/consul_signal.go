package realparts

import (
	"fmt"
	"syscall"
)

// Freeze stops the agent with SIGSTOP: it keeps its connections open but
// answers nothing. Thaw resumes it.
func (c *Consul) Freeze() error { return c.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen agent with SIGCONT.
func (c *Consul) Thaw() error { return c.signal(syscall.SIGCONT) }

func (c *Consul) signal(sig syscall.Signal) error {
	if c.cmd == nil {
		return fmt.Errorf("consul agent not running")
	}
	return c.cmd.Process.Signal(sig)
}
