package dockercompat

import (
	"bufio"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	s.mux = m
	h := s.handler
	m.HandleFunc("GET /_ping", s.ping) // GET patterns match HEAD too
	m.HandleFunc("GET /version", h(s.getVersion))
	m.HandleFunc("GET /info", h(s.info))
	m.HandleFunc("GET /events", h(s.streamEvents))

	m.HandleFunc("GET /containers/json", h(s.listContainers))
	m.HandleFunc("POST /containers/create", h(s.createContainer))
	m.HandleFunc("GET /containers/{id}/json", h(s.getContainer))
	m.HandleFunc("POST /containers/{id}/start", h(s.startContainer))
	m.HandleFunc("POST /containers/{id}/stop", h(s.stopContainer))
	m.HandleFunc("POST /containers/{id}/restart", h(s.restartContainer))
	m.HandleFunc("POST /containers/{id}/kill", h(s.killContainer))
	m.HandleFunc("POST /containers/{id}/wait", h(s.waitContainer))
	m.HandleFunc("POST /containers/{id}/attach", h(s.attachContainer))
	// docker run -t resizes the TTY the container would have: a no-op.
	m.HandleFunc("POST /containers/{id}/resize", h(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := s.lookup(r); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	m.HandleFunc("DELETE /containers/{id}", h(s.removeContainer))
	m.HandleFunc("GET /containers/{id}/logs", h(s.containerLogs))
	m.HandleFunc("POST /containers/{id}/exec", h(s.createExec))
	m.HandleFunc("POST /exec/{id}/start", h(s.startExec))
	m.HandleFunc("GET /exec/{id}/json", h(s.inspectExec))
	m.HandleFunc("POST /exec/{id}/resize", h(s.resizeExec))

	m.HandleFunc("GET /networks", h(s.listNetworks))
	m.HandleFunc("GET /networks/{id}", h(s.getNetwork))

	m.HandleFunc("GET /images/json", h(s.listImages))
	m.HandleFunc("POST /images/create", h(s.pullImage))
	m.HandleFunc("GET /images/{name...}", h(s.getImage))
	m.HandleFunc("DELETE /images/{name...}", h(s.removeImage))

	// What docker inspect <name> probes after containers and images, and
	// what docker volume ls and plugin ls ask: berth has neither.
	m.HandleFunc("GET /volumes", func(w http.ResponseWriter, _ *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string][]string{"Volumes": {}, "Warnings": {}})
	})
	m.HandleFunc("GET /volumes/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "get "+r.PathValue("name")+": no such volume")
	})
	m.HandleFunc("GET /plugins", func(w http.ResponseWriter, _ *http.Request) { api.WriteJSON(w, http.StatusOK, []struct{}{}) })
	m.HandleFunc("GET /plugins/{name...}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "plugin \""+strings.TrimSuffix(r.PathValue("name"), "/json")+"\" not found")
	})

	m.HandleFunc("/", s.notFound)
}

// ping answers GET and HEAD /_ping with dockerd's headers.
func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Swarm", "inactive")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK"))
}

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func machine() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return goruntime.GOARCH
	}
	return unix.ByteSliceToString(u.Machine[:])
}

func (s *Server) getVersion(w http.ResponseWriter, _ *http.Request) error {
	kernel := kernelVersion()
	api.WriteJSON(w, http.StatusOK, system.VersionResponse{
		Platform: system.PlatformInfo{Name: "berth " + s.version},
		Version:  s.version, APIVersion: APIVersion, MinAPIVersion: MinAPIVersion,
		Os: "linux", Arch: goruntime.GOARCH, GoVersion: goruntime.Version(), KernelVersion: kernel,
		Components: []system.ComponentVersion{{
			Name: "Engine", Version: s.version,
			Details: map[string]string{
				"ApiVersion": APIVersion, "MinAPIVersion": MinAPIVersion, "Os": "linux",
				"Arch": goruntime.GOARCH, "GoVersion": goruntime.Version(), "KernelVersion": kernel,
				"Experimental": "false",
			},
		}},
	})
	return nil
}

// osName is PRETTY_NAME from /etc/os-release.
func osName() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "2"
	}
	return "1"
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.rt.List(r.Context())
	if err != nil {
		return err
	}
	in := system.Info{
		ID: stableID("berth-daemon", s.rt.StateDir())[:36], Containers: len(cs),
		Images: len(s.images()), Driver: "overlay", DriverStatus: [][2]string{},
		Plugins: system.PluginsInfo{
			Volume: []string{}, Network: []string{"bridge", "host", "null"},
			Authorization: []string{}, Log: []string{"json-file"},
		},
		MemoryLimit: true, CPUCfsPeriod: true, CPUCfsQuota: true, PidsLimit: true, IPv4Forwarding: true,
		NFd: countFDs(), NGoroutines: goruntime.NumGoroutine(), SystemTime: time.Now().Format(time.RFC3339Nano),
		LoggingDriver: "json-file", CgroupDriver: "cgroupfs", CgroupVersion: cgroupVersion(),
		NEventsListener: s.hub.listeners(), KernelVersion: kernelVersion(), OperatingSystem: osName(),
		OSType: "linux", Architecture: machine(), IndexServerAddress: "https://index.docker.io/v1/",
		NCPU: goruntime.NumCPU(), MemTotal: memTotal(), DockerRootDir: s.rt.StateDir(),
		Name: hostname(), Labels: []string{}, ServerVersion: s.version,
		Runtimes:       map[string]system.RuntimeWithStatus{"berth": {}},
		DefaultRuntime: "berth", Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
		Isolation:       container.IsolationEmpty,
		SecurityOptions: []string{"name=seccomp,profile=builtin"},
		CDISpecDirs:     []string{}, Warnings: []string{},
	}
	for _, c := range cs {
		switch c.State {
		case runtime.StateRunning, runtime.StateRestarting:
			in.ContainersRunning++
		default:
			in.ContainersStopped++
		}
	}
	api.WriteJSON(w, http.StatusOK, in)
	return nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func memTotal() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
