package runtime

import "time"

// State is a container's lifecycle state, with Docker's names.
type State string

// Container states.
const (
	StateCreated    State = "created"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateExited     State = "exited"
	StateDead       State = "dead"
	StateRemoving   State = "removing" // being removed (the snapshot of a destroy event)
)

// Health is a container's health status, with Docker's names.
type Health string

// Health statuses. HealthNone means the container has no health check.
const (
	HealthNone      Health = "none"
	HealthStarting  Health = "starting"
	HealthHealthy   Health = "healthy"
	HealthUnhealthy Health = "unhealthy"
)

// Network modes.
const (
	NetworkBridge = "bridge"
	NetworkHost   = "host"
	NetworkNone   = "none"
)

// Port is one container port, exposed and optionally published on the host.
type Port struct {
	Port     uint16 `json:"port"`
	Proto    string `json:"proto"`               // "tcp" or "udp"
	HostIP   string `json:"host_ip,omitempty"`   // empty when not published
	HostPort uint16 `json:"host_port,omitempty"` // 0 when not published
}

// Network is one network the container is attached to.
type Network struct {
	Name      string `json:"name"`
	IP        string `json:"ip"`
	PrefixLen int    `json:"prefix_len"`
	Gateway   string `json:"gateway"`
	MAC       string `json:"mac,omitempty"`
	// What a Docker Engine also reports (docker-gen's Network fields).
	Aliases     []string `json:"aliases,omitempty"`
	EndpointID  string   `json:"endpoint_id,omitempty"`
	IPv6        string   `json:"ipv6,omitempty"`
	IPv6Prefix  int      `json:"ipv6_prefix_len,omitempty"`
	IPv6Gateway string   `json:"ipv6_gateway,omitempty"`
	Internal    bool     `json:"internal,omitempty"`
}

// Mount is a bind mount of a host path into the container.
type Mount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"read_only,omitempty"`
}

// RestartPolicy is Docker's restart policy: "no", "on-failure" (with an
// optional retry limit), "always" or "unless-stopped".
type RestartPolicy struct {
	Name       string `json:"name"`
	MaxRetries int    `json:"max_retries,omitempty"`
}

// HealthCheck runs Cmd inside the container every Interval; Retries
// consecutive failures make it unhealthy.
type HealthCheck struct {
	Cmd         []string      `json:"cmd"`
	Interval    time.Duration `json:"interval"`
	Timeout     time.Duration `json:"timeout"`
	Retries     int           `json:"retries"`
	StartPeriod time.Duration `json:"start_period,omitempty"`
}

// Spec describes a container to run. Empty fields take the image's values
// (Cmd, Entrypoint, Env, WorkingDir, User) the way Docker merges them.
type Spec struct {
	Name       string            `json:"name,omitempty"`
	Image      string            `json:"image"`
	Entrypoint []string          `json:"entrypoint,omitempty"` // nil: image's; [""]: none
	Cmd        []string          `json:"cmd,omitempty"`
	Env        []string          `json:"env,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	User       string            `json:"user,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	ReadOnly   bool              `json:"read_only,omitempty"`
	Volumes    []Mount           `json:"volumes,omitempty"`
	Memory     int64             `json:"memory,omitempty"`     // bytes; 0 = unlimited
	CPUs       float64           `json:"cpus,omitempty"`       // 0 = unlimited
	PidsLimit  int64             `json:"pids_limit,omitempty"` // 0 = unlimited
	Network    string            `json:"network,omitempty"`    // bridge (default), host, none
	Publish    []Port            `json:"publish,omitempty"`
	Restart    RestartPolicy     `json:"restart"`
	Health     *HealthCheck      `json:"health,omitempty"`
	StopSignal string            `json:"stop_signal,omitempty"`
}

// Container is a snapshot of one container. It carries what docker-gen's
// RuntimeContainer and the registrar need.
type Container struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Image       string            `json:"image"`    // the reference as given
	ImageID     string            `json:"image_id"` // config digest
	Hostname    string            `json:"hostname"`
	Cmd         []string          `json:"cmd"` // the effective argv
	Env         []string          `json:"env"`
	Labels      map[string]string `json:"labels"`
	WorkingDir  string            `json:"working_dir,omitempty"`
	User        string            `json:"user,omitempty"`
	NetworkMode string            `json:"network_mode"`
	Networks    []Network         `json:"networks"`
	IP          string            `json:"ip,omitempty"` // first network's IP
	Ports       []Port            `json:"ports"`        // exposed, with host side when published
	Mounts      []Mount           `json:"mounts"`
	State       State             `json:"state"`
	Pid         int               `json:"pid,omitempty"`
	Health      Health            `json:"health"`
	ExitCode    int               `json:"exit_code"`
	OOMKilled   bool              `json:"oom_killed,omitempty"`
	Error       string            `json:"error,omitempty"`
	Restart     RestartPolicy     `json:"restart"`
	RestartCnt  int               `json:"restart_count"`
	Created     time.Time         `json:"created"`
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
}

// Running reports whether the container's process is running.
func (c Container) Running() bool { return c.State == StateRunning }

// Command is the entrypoint and command a container of s runs, from an
// image with entry and cmd, by Docker's rules: an explicit entrypoint
// drops the image's Cmd (an entrypoint of [""] clears it), a spec's Cmd
// replaces the image's.
func (s Spec) Command(entry, cmd []string) ([]string, []string) {
	if s.Entrypoint != nil {
		entry, cmd = s.Entrypoint, nil
		if len(entry) == 1 && entry[0] == "" {
			entry = nil
		}
	}
	if len(s.Cmd) > 0 {
		cmd = s.Cmd
	}
	return entry, cmd
}

// EventType names a lifecycle event, with Docker's names.
type EventType string

// Event types.
const (
	EventCreate       EventType = "create"
	EventStart        EventType = "start"
	EventHealthStatus EventType = "health_status"
	EventDie          EventType = "die"
	// EventKill: a signal was sent to the container, which may still run
	// (Docker's kill); Event.Signal names it. Stopping sends the stop
	// signal this way first, so a kill of a terminating signal announces
	// the stop before the process is gone.
	EventKill    EventType = "kill"
	EventStop    EventType = "stop"
	EventDestroy EventType = "destroy"
	// EventUpdate: the container's name or networks changed (Docker's
	// rename, network connect and disconnect).
	EventUpdate EventType = "update"
)

// Event is one lifecycle event with a full snapshot of the container after
// it happened.
type Event struct {
	Type      EventType `json:"type"`
	Time      time.Time `json:"time"`
	Container Container `json:"container"`
	Signal    string    `json:"signal,omitempty"` // EventKill: "SIGTERM", "SIGHUP", ...
}

// Terminating reports whether a kill event's signal usually ends a
// container: SIGTERM, SIGKILL, SIGINT or SIGQUIT. (A SIGHUP that asks a
// proxy to reload does not.)
func (e Event) Terminating() bool {
	if e.Type != EventKill {
		return false
	}
	switch e.Signal {
	case "SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT":
		return true
	}
	return false
}
