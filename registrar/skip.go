package registrar

import (
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// Skip is why the registrar writes no records for a container.
type Skip string

// The reasons a container has no records. SkipNone: it has them.
const (
	SkipNone       Skip = ""
	SkipNotRunning Skip = "not running"
	SkipIgnored    Skip = "ignored" // label berth.ignore or SERVICE_IGNORE
	SkipStarting   Skip = "health starting"
	SkipUnhealthy  Skip = "unhealthy"
)

// Skipped says why the registrar writes no records for c (SkipNone when
// it writes them): the one rule recordsFor applies.
func Skipped(c runtime.Container) Skip {
	switch env := c.Env; {
	case !c.Running():
		return SkipNotRunning
	case truthy(c.Labels[labelIgnore]) || ignoredEnv(env):
		return SkipIgnored
	case c.Health == runtime.HealthStarting:
		return SkipStarting
	case c.Health == runtime.HealthUnhealthy:
		return SkipUnhealthy
	}
	return SkipNone
}

func ignoredEnv(env []string) bool {
	return truthy(records.EnvMap(env)["SERVICE_IGNORE"])
}
