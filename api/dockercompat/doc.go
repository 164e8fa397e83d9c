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
// 404 {"message":"page not found"} and is logged once per endpoint
// (method and path, the object named in it aside). A panicking handler answers 500; the server keeps serving.
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
// CLI = the real docker CLI: TestDockerCLI runs version, info, run -d
// (-e --label --name -p), port, ps, ps -a --format json, inspect (found,
// not found), logs, logs -f, stop, rm and events --since/--until against
// berth and against the machine's Docker Engine with the same image and
// compares exit codes and output shape; TestDockerCLIMore and TestExecTTY
// run the rest on berth. moby = github.com/moby/moby/client, Traefik's
// (TestMobyClient, TestShutdownCutsStreams, TestExecTTY). fsouza =
// github.com/fsouza/go-dockerclient, docker-gen's (TestGoDockerClient).
// gen = berth docker-gen -endpoint unix://<sock> -watch (cmd/berth
// TestDockerGenOnDockerCompat; berth's runtime/docker on the moby
// client). raw = plain HTTP on the socket (TestBadInput).
//
//	HEAD /_ping                   CLI (before every command), moby, gen, raw
//	GET  /_ping                   fsouza, raw (versioned and unversioned)
//	GET  /version                 CLI version (and DOCKER_API_VERSION=1.52: too new), moby (pinned 1.54: too new), fsouza, gen, raw (1.23 too old, 1.52 too new)
//	GET  /info                    CLI info, CLI inspect <unknown>; moby, fsouza, gen
//	GET  /containers/json         CLI ps, ps -a --format json, ps -l, --filter label/name/health; moby ({"k":{"v":true}}: status, label, name, exited, expose, publish, ancestor, network, id); fsouza ({"k":["v"]}: status, name; unknown key 400); gen; raw
//	POST /containers/create       CLI run, run -d (-e --label --name -p, --health-cmd, --rm); moby (name conflict 409, missing image 404); fsouza; raw (malformed JSON, empty body, bad name, network, privileged, binds, restart policy, host port)
//	GET  /containers/{id}/json    CLI inspect (found, not found), port, logs; moby; fsouza (legacy NetworkSettings.IPAddress); gen; raw (unversioned and /v1.40)
//	POST /containers/{id}/start   CLI run, start (a missing command: 127); moby; fsouza
//	POST /containers/{id}/attach  CLI run without -d (output, exit code, --rm, -t unframed); moby (shutdown)
//	POST /containers/{id}/wait    CLI run -d (next-exit), run --rm (removed), wait (not-running); moby (next-exit, removed, not-running)
//	POST /containers/{id}/stop    CLI stop (compared), stop -t; moby (304 when stopped); fsouza; raw (404, bad t)
//	POST /containers/{id}/kill    CLI kill (stopped: exit 1); moby (SIGKILL, 409); fsouza (SIGHUP, docker-gen's notify); raw
//	POST /containers/{id}/restart CLI restart; moby; fsouza (docker-gen's notify)
//	DELETE /containers/{id}       CLI rm (compared; running: 409), rm -f; moby (force); fsouza; raw (404)
//	GET  /containers/{id}/logs    CLI logs, logs -f (compared), logs --tail, logs -t, of a -t container; moby (stdcopy framing, tail, timestamps, follow); fsouza; raw
//	POST /containers/{id}/exec    CLI exec, exec -i, exec -t, exec -it; moby (stopped: 409; Tty with a console size); raw
//	POST /exec/{id}/start         CLI exec (hijacked, 101 UPGRADED, stdin with -i; raw stream with -t); moby (exec attach, with and without Tty); raw (404)
//	POST /exec/{id}/resize        CLI exec -it (follows its terminal's size); moby (running: resized; ended: 409; no Tty: 400; unknown: 404); raw (h=70000: 400)
//	GET  /exec/{id}/json          CLI exec (exit code 4), exec -it (3); moby (exit codes 5, 7)
//	GET  /events                  CLI events --since/--until (compared), live events with a container filter; moby (type filter, jsonl, live); fsouza (legacy filter encoding, legacy status/id/from, live); gen; raw (bad filter, bad since)
//	GET  /networks                CLI network ls; moby; fsouza; raw (bad filter)
//	GET  /networks/{id}           CLI network inspect, CLI inspect <unknown>; moby; raw (404)
//	GET  /images/json             CLI images; moby
//	GET  /images/{name}/json      CLI image inspect, CLI inspect <unknown>; moby; raw (404)
//	POST /images/create           CLI pull (from an in-process registry on loopback; a missing image: exit 1); raw
//	DELETE /images/{name}         CLI rmi; raw (404)
//	GET  /volumes/{name}, /plugins/{name}/json   CLI inspect <unknown> (404, as dockerd), raw
//
// POST /containers/{id}/resize is a no-op (docker run -t calls it).
//
// Exec with Tty (docker exec -t, -it; TestExecTTY) runs the command on a
// real terminal of the container's devpts, of the create's (or start's)
// ConsoleSize; POST /exec/{id}/resize changes it while the command runs
// (before the start, it sets the size the terminal starts with). As with
// dockerd, the start request's Tty picks the stream: raw with it (one
// output, the terminal's), multiplexed without.
//
// Limits: containers have no real TTY (create with -t runs without one,
// warns, and its streams go out unframed as the client then expects; run
// -it is a 400); no stdin for containers (attach reads and drops it);
// exec runs as the container's user in its working directory and
// ignores DetachKeys (ctrl-p ctrl-q reaches the command); the TTY
// flag lives in the server's memory (a restarted daemon forgets
// it). Not served (404 "page not found", logged once per endpoint):
// volumes and plugins beyond the empty lists, build, commit,
// export/import, stats, top, update, rename, pause, network
// create/connect, swarm.
//
// Concurrency: Serve follows the runtime's events for the server's life
// (a history of the last 1024 for since/until) and fans them out to the
// event and wait streams; a stream that falls behind is ended. Serve
// returns once ctx has ended, the streams are cut and the listener is
// closed.
package dockercompat
