package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/image"
)

// Client talks to a berth daemon over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

var _ runtime.Runtime = (*Client)(nil)

// NewClient returns a client for the daemon listening on socket, a path
// (a unix:// prefix, as in DOCKER_HOST, is accepted and dropped).
func NewClient(socket string) *Client {
	socket = strings.TrimPrefix(socket, "unix://")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket is the daemon's socket the client talks to.
func (c *Client) Socket() string { return c.socket }

// do sends a request and returns the response when its status is 2xx;
// otherwise it decodes the API error.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case io.Reader: // streamed as it is read
		rd, contentType = b, "application/octet-stream"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(js)
	}
	u := "http://berth" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, dialError(c.socket, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var ae Error
		if err := json.NewDecoder(resp.Body).Decode(&ae); err != nil || ae.Message == "" {
			return nil, fmt.Errorf("berth daemon: %s %s: %s", method, path, resp.Status)
		}
		return nil, &ae
	}
	return resp, nil
}

// call does a request and decodes a JSON result into out (if non-nil).
func (c *Client) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("berth daemon: %s %s: bad response: %w", method, path, err)
	}
	return nil
}

// frames reads a streamed response, calling fn per frame until the stream
// ends; an error frame ends it with that error.
func (c *Client) frames(ctx context.Context, method, path string, q url.Values, body any, fn func(Frame) error) error {
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var f Frame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return fmt.Errorf("berth daemon: bad frame: %w", err)
		}
		if f.Error != nil {
			return f.Error
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("berth daemon: stream: %w", err)
	}
	return nil
}

// Ping checks that the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/v1/_ping", nil, nil, nil)
}

// Run creates and starts a container.
func (c *Client) Run(ctx context.Context, spec runtime.Spec) (runtime.Container, error) {
	var out runtime.Container
	err := c.call(ctx, http.MethodPost, "/v1/containers", nil, spec, &out)
	return out, err
}

// ListOptions filters ListFiltered.
type ListOptions struct {
	All    bool     // include stopped containers
	Labels []string // "k=v" or "k"; all must match
}

// List returns every container (runtime.Runtime semantics).
func (c *Client) List(ctx context.Context) ([]runtime.Container, error) {
	return c.ListFiltered(ctx, ListOptions{All: true})
}

// ListFiltered returns the containers opts selects.
func (c *Client) ListFiltered(ctx context.Context, opts ListOptions) ([]runtime.Container, error) {
	q := url.Values{"label": opts.Labels}
	if opts.All {
		q.Set("all", "1")
	}
	var out []runtime.Container
	err := c.call(ctx, http.MethodGet, "/v1/containers", q, nil, &out)
	return out, err
}

// Inspect returns one container by id, id prefix or name.
func (c *Client) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	var out runtime.Container
	err := c.call(ctx, http.MethodGet, "/v1/containers/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

func graceQuery(d time.Duration) url.Values {
	return url.Values{"t": {strconv.Itoa(int(d / time.Second))}}
}

// Start starts a stopped container.
func (c *Client) Start(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodPost, "/v1/containers/"+url.PathEscape(id)+"/start", nil, nil, nil)
}

// Stop stops a container, killing it after grace (whole seconds).
func (c *Client) Stop(ctx context.Context, id string, grace time.Duration) error {
	return c.call(ctx, http.MethodPost, "/v1/containers/"+url.PathEscape(id)+"/stop", graceQuery(grace), nil, nil)
}

// Restart stops and starts a container.
func (c *Client) Restart(ctx context.Context, id string, grace time.Duration) error {
	return c.call(ctx, http.MethodPost, "/v1/containers/"+url.PathEscape(id)+"/restart", graceQuery(grace), nil, nil)
}

// Kill sends a signal ("KILL", "SIGHUP", "15"; empty means KILL).
func (c *Client) Kill(ctx context.Context, id, signal string) error {
	return c.call(ctx, http.MethodPost, "/v1/containers/"+url.PathEscape(id)+"/kill", url.Values{"signal": {signal}}, nil, nil)
}

// Remove deletes a container.
func (c *Client) Remove(ctx context.Context, id string, opts ...runtime.RemoveOption) error {
	var q url.Values
	if runtime.ApplyRemoveOptions(opts).Force {
		q = url.Values{"force": {"1"}}
	}
	return c.call(ctx, http.MethodDelete, "/v1/containers/"+url.PathEscape(id), q, nil, nil)
}

// Logs streams a container's output lines to fn.
func (c *Client) Logs(ctx context.Context, id string, opts runtime.LogOptions, fn func(runtime.LogLine) error) error {
	q := url.Values{"tail": {strconv.Itoa(opts.Tail)}}
	if opts.Follow {
		q.Set("follow", "1")
	}
	return c.frames(ctx, http.MethodGet, "/v1/containers/"+url.PathEscape(id)+"/logs", q, nil, func(f Frame) error {
		if f.Log != nil {
			return fn(*f.Log)
		}
		return nil
	})
}

// ExecIO is an exec'd command's side of the client: where its input
// comes from (with ExecRequest.Stdin), where its output goes (stderr is
// unused with a TTY), and the terminal's resizes (with ExecRequest.TTY).
type ExecIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Resize         <-chan runtime.TermSize
}

// Exec runs a command in a running container and returns its exit code.
// With req.Stdin or req.TTY the input streams to the daemon while the
// output streams back, on one connection.
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest, eio ExecIO) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	go sendExecInput(ctx, pw, req, eio)
	code := -1
	err := c.frames(ctx, http.MethodPost, "/v1/containers/"+url.PathEscape(id)+"/exec", nil, pr, func(f Frame) error {
		switch {
		case f.Output != nil && f.Output.Stream == "stderr" && eio.Stderr != nil:
			_, err := eio.Stderr.Write(f.Output.Data)
			return err
		case f.Output != nil && f.Output.Stream == "stdout" && eio.Stdout != nil:
			_, err := eio.Stdout.Write(f.Output.Data)
			return err
		case f.ExitCode != nil:
			code = *f.ExitCode
		}
		return nil
	})
	if err == nil && code < 0 {
		err = errors.New("berth daemon: exec stream ended without an exit code")
	}
	return code, err
}

// sendExecInput writes the exec body: the request, then (with stdin or a
// TTY) stdin chunks, a CloseStdin at its end, and resizes, until ctx ends.
func sendExecInput(ctx context.Context, pw *io.PipeWriter, req ExecRequest, eio ExecIO) {
	enc := json.NewEncoder(pw)
	if err := enc.Encode(req); err != nil || !(req.Stdin || req.TTY) {
		pw.Close()
		return
	}
	var mu sync.Mutex
	send := func(in ExecInput) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(in)
	}
	if req.Stdin && eio.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := eio.Stdin.Read(buf)
				if n > 0 && send(ExecInput{Stdin: buf[:n]}) != nil {
					return
				}
				if err != nil {
					_ = send(ExecInput{CloseStdin: true})
					return
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case sz, ok := <-eio.Resize:
			if !ok {
				eio.Resize = nil
				continue
			}
			if send(ExecInput{Resize: &sz}) != nil {
				return
			}
		}
	}
}

// Events streams lifecycle events until ctx ends or the stream breaks.
func (c *Client) Events(ctx context.Context) (<-chan runtime.Event, <-chan error) {
	ch := make(chan runtime.Event, 64)
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		defer close(ch)
		err := c.frames(ctx, http.MethodGet, "/v1/events", nil, nil, func(f Frame) error {
			if f.Event == nil {
				return nil
			}
			select {
			case ch <- *f.Event:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil && ctx.Err() == nil {
			errc <- err
		}
	}()
	return ch, errc
}

// Images lists the daemon's images.
func (c *Client) Images(ctx context.Context) ([]image.Image, error) {
	var out []image.Image
	err := c.call(ctx, http.MethodGet, "/v1/images", nil, nil, &out)
	return out, err
}

// Pull pulls ref on the daemon, reporting progress.
func (c *Client) Pull(ctx context.Context, ref string, progress func(image.Progress)) (image.Image, error) {
	var img image.Image
	got := false
	err := c.frames(ctx, http.MethodPost, "/v1/images/pull", url.Values{"ref": {ref}}, nil, func(f Frame) error {
		if f.Progress != nil && progress != nil {
			progress(*f.Progress)
		}
		if f.Image != nil {
			img, got = *f.Image, true
		}
		return nil
	})
	if err == nil && !got {
		err = errors.New("berth daemon: pull stream ended without an image")
	}
	return img, err
}

// Load loads the docker save tarball at path (on this host: it is
// streamed to the daemon).
func (c *Client) Load(ctx context.Context, path string) ([]image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	return c.LoadReader(ctx, f)
}

// LoadReader loads the docker save tarball read from r.
func (c *Client) LoadReader(ctx context.Context, r io.Reader) ([]image.Image, error) {
	var out []image.Image
	err := c.call(ctx, http.MethodPost, "/v1/images/load", nil, r, &out)
	return out, err
}

// Import makes the image tag from a root filesystem tarball or directory
// at src (on this host: a directory is sent as a tar).
func (c *Client) Import(ctx context.Context, src, tag string) (image.Image, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return image.Image{}, fmt.Errorf("import: %w", err)
	}
	if !fi.IsDir() {
		f, err := os.Open(src)
		if err != nil {
			return image.Image{}, fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		return c.ImportReader(ctx, f, tag)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(image.WriteDirTar(pw, src)) }()
	defer pr.Close()
	img, err := c.ImportReader(ctx, pr, tag)
	if err != nil {
		return img, fmt.Errorf("import %s: %w", src, err)
	}
	return img, nil
}

// ImportReader makes the image tag from the root filesystem tar
// (optionally compressed) read from r.
func (c *Client) ImportReader(ctx context.Context, r io.Reader, tag string) (image.Image, error) {
	var out image.Image
	err := c.call(ctx, http.MethodPost, "/v1/images/import", url.Values{"tag": {tag}}, r, &out)
	return out, err
}

// RemoveImage untags or deletes an image.
func (c *Client) RemoveImage(ctx context.Context, ref string, force bool) ([]string, error) {
	q := url.Values{"ref": {ref}}
	if force {
		q.Set("force", "1")
	}
	var out []string
	err := c.call(ctx, http.MethodDelete, "/v1/images", q, nil, &out)
	return out, err
}

// dialError says why the daemon's socket cannot be reached, and what to do.
func dialError(socket string, err error) error {
	var hint string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint = "no such socket: is berth up running? (its --socket, or [daemon] socket; set BERTH_HOST or -H to match)"
	case errors.Is(err, fs.ErrPermission):
		hint = "permission denied: the socket is mode 0660; run as root or as a member of its group"
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = "connection refused: nothing listens on it (a daemon that died leaves its socket behind)"
	default:
		return fmt.Errorf("berth daemon at %s: %w", socket, err)
	}
	return fmt.Errorf("cannot reach the berth daemon at %s: %s: %w", socket, hint, err)
}
