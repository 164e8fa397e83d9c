package records

import (
	"fmt"
	"strconv"
	"strings"
)

const deploymentsDir = "deployments"

// DeploymentsPrefix is the directory of one service's deployment
// revisions, with a trailing slash: "<prefix>/deployments/<service>/".
func DeploymentsPrefix(prefix, service string) string {
	return cleanPrefix(prefix) + "/" + deploymentsDir + "/" + service + "/"
}

// DeploymentKey is the key of one deployment revision:
// "<prefix>/deployments/<service>/<rev>", rev zero-padded to eight digits
// so that a listing is in revision order.
func DeploymentKey(prefix, service string, rev int) string {
	return fmt.Sprintf("%s%08d", DeploymentsPrefix(prefix, service), rev)
}

// DeploymentLockKey is the key a rollout of service holds while it runs;
// it sorts after every revision key and is not one.
func DeploymentLockKey(prefix, service string) string {
	return DeploymentsPrefix(prefix, service) + "lock"
}

// ParseDeploymentKey returns the revision of a key made by DeploymentKey
// under dir (a DeploymentsPrefix), or false.
func ParseDeploymentKey(dir, key string) (int, bool) {
	rest, ok := strings.CutPrefix(key, dir)
	if !ok || len(rest) != 8 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}
