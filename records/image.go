package records

import "strings"

// ParseImage splits an image reference the way docker-gen does for
// RuntimeContainer.Image: the part before the first "/" is the registry,
// the part after the first ":" of the rest is the tag. ("nginx:1.27" →
// {"", "nginx", "1.27"}; "registry:5000/app:v2" → {"registry:5000",
// "app", "v2"}.)
func ParseImage(ref string) DockerImage {
	var img DockerImage
	repo := ref
	if i := strings.Index(ref, "/"); i >= 0 {
		img.Registry, repo = ref[:i], ref[i+1:]
	}
	if i := strings.Index(repo, ":"); i >= 0 {
		repo, img.Tag = repo[:i], repo[i+1:]
	}
	img.Repository = repo
	return img
}
