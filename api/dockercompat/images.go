package dockercompat

import (
	"context"
	"errors"
	"net/http"
	"path"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime"
	embimage "github.com/berthd/berth/runtime/embedded/image"
)

var imageFilters = []string{"before", "dangling", "label", "reference", "since", "until"}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"), imageFilters...)
	if err != nil {
		return err
	}
	imgs, err := s.rt.Images().List()
	if err != nil {
		return err
	}
	cs, err := s.rt.List(r.Context())
	if err != nil {
		return err
	}
	slices.SortFunc(imgs, func(a, b embimage.Image) int { return b.Created.Compare(a.Created) })
	out := []image.Summary{}
	for _, img := range imgs {
		if !f.any("reference", func(v string) bool {
			return slices.ContainsFunc(img.RepoTags, func(t string) bool { return referenceMatch(v, t) })
		}) || !f.any("dangling", func(v string) bool { return (v == "true" || v == "1") == (len(img.RepoTags) == 0) }) ||
			!f.matchLabels("label", img.Config.Labels) {
			continue
		}
		n := 0
		for _, c := range cs {
			if c.ImageID == img.ID {
				n++
			}
		}
		out = append(out, image.Summary{
			ID: img.ID, RepoTags: nonNil(img.RepoTags), RepoDigests: []string{}, Created: img.Created.Unix(),
			Size: img.Size, Labels: nonNilMap(img.Config.Labels), Containers: int64(n), SharedSize: -1,
		})
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

// referenceMatch is the reference filter: "busybox" matches every tag of
// busybox, "busybox:1*" is a glob on the tag.
func referenceMatch(pattern, tag string) bool {
	repo, _, _ := strings.Cut(tag, ":")
	if !strings.Contains(pattern, ":") {
		return matchGlob(pattern, repo)
	}
	return matchGlob(pattern, tag)
}

func matchGlob(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) error {
	name, ok := strings.CutSuffix(r.PathValue("name"), "/json")
	if !ok {
		s.notFound(w, r)
		return nil
	}
	img, err := s.rt.Images().Get(name)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrInvalid) {
			return errorf(http.StatusNotFound, "No such image: %s", name)
		}
		return err
	}
	c := img.Config
	cfg := &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
		User: c.User, ExposedPorts: c.ExposedPorts, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
		Volumes: c.Volumes, WorkingDir: c.WorkingDir, Labels: c.Labels, StopSignal: c.StopSignal,
	}}
	cfg.OnBuild, cfg.Shell = c.OnBuild, c.Shell
	if h := c.Healthcheck; h != nil {
		cfg.Healthcheck = &dockerspec.HealthcheckConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
	}
	api.WriteJSON(w, http.StatusOK, image.InspectResponse{
		ID: img.ID, RepoTags: nonNil(img.RepoTags), RepoDigests: []string{}, Created: rfc3339(img.Created),
		Config: cfg, Architecture: goruntime.GOARCH, Os: "linux", Size: img.Size,
		RootFS: image.RootFS{Type: "layers", Layers: img.Layers},
	})
	return nil
}

// pullImage serves POST /images/create?fromImage=&tag=: a registry pull
// with dockerd's JSON progress stream. Errors after the headers went out
// are reported in the stream, as dockerd does.
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	from, tag := q.Get("fromImage"), q.Get("tag")
	if from == "" {
		if q.Get("fromSrc") != "" {
			return badRequest("berth does not import images through this endpoint: use berth import")
		}
		return badRequest("fromImage is required")
	}
	ref := from
	if tag != "" {
		if strings.HasPrefix(tag, "sha256:") {
			ref += "@" + tag
		} else {
			ref += ":" + tag
		}
	}
	norm, err := embimage.Normalize(ref)
	if err != nil && !strings.Contains(ref, "@") {
		return badRequest("invalid reference format: %s", ref)
	}
	if norm == "" {
		norm = ref
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush(w)
	var mu sync.Mutex
	send := func(m jsonstream.Message) {
		mu.Lock()
		defer mu.Unlock()
		_ = jsonLine(w, m)
	}
	repo, t, _ := strings.Cut(norm, ":")
	if i := strings.LastIndex(norm, ":"); i > strings.LastIndex(norm, "/") {
		repo, t = norm[:i], norm[i+1:]
	}
	send(jsonstream.Message{Status: "Pulling from " + repo, ID: t})
	img, err := s.rt.Images().Pull(context.WithoutCancel(r.Context()), ref, func(p embimage.Progress) {
		id := strings.TrimPrefix(p.Layer, "sha256:")
		if len(id) > 12 {
			id = id[:12]
		}
		switch {
		case p.Cached:
			send(jsonstream.Message{Status: "Already exists", ID: id})
		case p.Done:
			send(jsonstream.Message{Status: "Pull complete", ID: id})
		default:
			send(jsonstream.Message{Status: "Downloading", ID: id, Progress: &jsonstream.Progress{Current: p.Current, Total: p.Total}})
		}
	})
	if err != nil {
		send(jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}})
		return nil
	}
	send(jsonstream.Message{Status: "Digest: " + img.ID})
	send(jsonstream.Message{Status: "Status: Downloaded newer image for " + norm})
	at := time.Now()
	s.hub.publish(events.Message{
		Type: events.ImageEventType, Action: events.ActionPull, Scope: "local",
		Actor: events.Actor{ID: norm, Attributes: map[string]string{"name": norm}},
		Time:  at.Unix(), TimeNano: at.UnixNano(),
	})
	return nil
}

// removeImage serves DELETE /images/{name}: untag, and delete the image
// once no tag is left (force: even when containers use it).
func (s *Server) removeImage(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, err := s.rt.Images().Get(name); err != nil {
		if errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrInvalid) {
			return errorf(http.StatusNotFound, "No such image: %s", name)
		}
		return err
	}
	removed, err := s.rt.Images().Remove(name, boolValue(r, "force"), s.rt.ImageInUse)
	if err != nil {
		if errors.Is(err, runtime.ErrConflict) {
			return errorf(http.StatusConflict, "conflict: unable to remove image %s: %v", name, err)
		}
		return err
	}
	out := []image.DeleteResponse{}
	for _, x := range removed {
		if v, ok := strings.CutPrefix(x, "Deleted: "); ok {
			out = append(out, image.DeleteResponse{Deleted: v})
		} else if v, ok := strings.CutPrefix(x, "Untagged: "); ok {
			out = append(out, image.DeleteResponse{Untagged: v})
		}
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}
