// Package dockercompat serves a subset of the Docker Engine API (level
// 1.51, minimum 1.24) for berth's embedded runtime on a unix socket, so
// the docker CLI, docker-gen (go-dockerclient) and Traefik (moby client)
// work against berth unmodified.
//
//	srv := dockercompat.NewServer(rt, dockercompat.WithVersion(v), dockercompat.WithLogger(l))
//	ln, err := dockercompat.Listen("/run/berth/docker.sock") // mode 0660
//	err = srv.Serve(ctx, ln)                                // returns when ctx ends
//
// Paths are served with and without a /vX.Y prefix; an unversioned path
// is API 1.51. A version below 1.24 or above 1.51 gets dockerd's 400
// ("client version X is too old/new ..."). Every response carries
// Api-Version, Ostype and Server. Errors are dockerd's {"message": ...}
// with its status codes: 404 no such container/image/network/exec, 409
// conflict (name in use, removing a running container, killing a stopped
// one), 400 bad parameter (malformed JSON, unknown filter keys, bad
// values, settings berth cannot honour), 304 start of a running or stop
// of a stopped container. An endpoint berth does not serve gets dockerd's
// 404 {"message":"page not found"} and is logged once per method and
// path. A panicking handler answers 500; the server keeps serving.
//
// Wire types are github.com/moby/moby/api's. For requests below API 1.52
// (and unversioned ones, which docker-gen makes) container inspect adds
// the legacy top-level NetworkSettings fields (IPAddress, Gateway, ...;
// docker-gen's .IP reads them) and events carry status/id/from.
// Timestamps are RFC 3339 and never empty (0001-01-01T00:00:00Z for
// "never"); exposed ports that are not published show as "80/tcp": null;
// event time is never zero and ids are 64 hex digits.
//
// # Endpoints and the clients that exercise them in tests
//
// CLI = the real docker CLI (TestDockerCLI, compared with the machine's
// Docker Engine; TestDockerCLIMore), moby = github.com/moby/moby/client,
// Traefik's (TestMobyClient), fsouza = github.com/fsouza/go-dockerclient,
// docker-gen's (TestGoDockerClient), gen = berth docker-gen -watch against
// this server (cmd/berth TestDockerGenOnDockerCompat, through berth's
// runtime/docker, itself on the moby client), raw = plain HTTP
// (TestBadInput).
//
//	HEAD /_ping                          CLI (before every command), moby, gen
//	GET  /_ping                          fsouza, raw
//	GET  /version                        CLI version, moby, fsouza, gen, raw (version bounds)
//	GET  /info                           CLI info and inspect <unknown>, moby, fsouza, gen
//	GET  /containers/json                CLI ps (-a, --filter, --format json), moby and fsouza (both filter encodings), gen, raw (bad filters)
//	POST /containers/create              CLI run -d (-e --label --name -p), moby, raw (malformed JSON, missing image)
//	GET  /containers/{id}/json           CLI inspect (found, not found), logs; moby, fsouza, gen
//	POST /containers/{id}/start          CLI run -d, moby, fsouza
//	POST /containers/{id}/wait           CLI run -d (condition=next-exit), moby (not-running, removed)
//	POST /containers/{id}/stop           CLI stop, moby, fsouza
//	POST /containers/{id}/kill           CLI kill, moby, fsouza (docker-gen's notify)
//	POST /containers/{id}/restart        moby, fsouza (docker-gen's notify)
//	DELETE /containers/{id}              CLI rm (stopped, running: 409), moby (force)
//	GET  /containers/{id}/logs           CLI logs, logs -f; moby (tail, timestamps, since/until)
//	POST /containers/{id}/exec           CLI exec, moby
//	POST /exec/{id}/start                CLI exec (hijacked, 101 UPGRADED), moby
//	GET  /exec/{id}/json                 CLI exec (exit code), moby
//	GET  /events                         CLI events --since/--until, moby (type filter, live), fsouza (legacy filter encoding, live), gen
//	GET  /networks                       moby, fsouza, gen
//	GET  /networks/{id}                  CLI inspect <unknown> (404), moby
//	GET  /images/json                    CLI images, moby
//	GET  /images/{name}/json             CLI inspect <unknown> (404), CLI image inspect, moby
//	POST /images/create                  CLI pull (from an in-process registry on loopback), moby
//	DELETE /images/{name}                CLI rmi
//
// Not served (404 "page not found", logged once): attach and resize
// (docker run without -d, docker exec -t), volumes, plugins, build,
// commit, export/import, stats, top, update, rename, pause, networks
// create/connect, swarm. Exec and logs have no TTY mode: create with -t
// is accepted with a warning and runs without one; exec with -t is a 400.
//
// Concurrency: Serve follows the runtime's events for the server's life
// (a history of the last 1024 for since/until) and fans them out to the
// event and wait streams; a stream that falls behind is ended. Serve
// returns once ctx has ended, the streams are cut and the listener is
// closed.
package dockercompat
