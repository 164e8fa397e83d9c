// Package deploy replaces a service's containers with zero failed
// requests (blue-green) and rolls back by image digest. A Service runs the
// rollouts of one host, in the daemon, against runtime.Runtime (the
// embedded runtime or a Docker Engine), in this order:
//
//  1. start the new containers (all at once, or Request.MaxSurge at a
//     time), labelled berth.service and berth.deploy.revision;
//  2. wait until each passes its health check or, without one, accepts
//     TCP on the address its record gives the proxy, and is registered
//     (with MaxSurge: each batch, before the next starts);
//  3. wait until each is in the proxy: every template that reads the
//     service's records has applied (rendered, checked, swapped,
//     reloaded) the store revision that added them (Templates);
//  4. mark the old containers draining while they still run (Drainer) and
//     wait until the templates have applied that too;
//  5. wait the drain period; stop the old containers and remove them
//     (Request.KeepOld keeps them, stopped).
//
// With Request.Probe, step 3 also waits until the proxy answers for the
// service (below 500, several times in a row on new connections).
//
// While the store is unavailable a rollout pauses: its waits for records
// and templates go on (within the timeout before step 4), and the old
// containers' drain waits for the store to come back, so the old colour
// is never stopped while the proxy may still route to it. Undeploy
// drains, stops and removes a service's containers and records an
// undeployed revision, which the replica keeper honours.
//
// "Applied" is the template's reload command succeeding. A proxy that
// reloads asynchronously (nginx -s reload, a SIGHUP to its master) takes
// a moment more to serve the new configuration from new workers: adding
// new containers loses nothing meanwhile (the old ones still serve), and
// the drain period in step 5 covers it for the old ones.
//
// A failure before step 5 (an image that does not exist, a container
// that exits or fails its health check, the timeout, the caller's context
// ending) undoes the rollout: drained old containers serve again, the new
// ones leave the proxy and are removed, and the revision is recorded as
// failed with the reason. Traffic is never taken away.
//
// Every deploy is a Revision recorded under
// <prefix>/deployments/<service>/<rev> (records.DeploymentKey): image
// reference and digest, spec, times, outcome, reason. Rollback deploys an
// earlier succeeded revision again by its digest. One rollout per service
// runs at a time: a second is refused (ErrInFlight), here and, through a
// lock key created only if absent (store.Create) and bound to the
// daemon's lease, on other daemons and processes sharing the store; a
// dead holder's lock goes with its lease. Recover claims the same lock
// before it settles an interrupted rollout.
//
// Concurrency: a Service is safe for concurrent use; Deploy and Rollback
// return when the rollout has ended (succeeded, or failed and undone);
// the progress function is called from the calling goroutine.
package deploy
