package containerinit

/*
#cgo CFLAGS: -Wall
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The name of the sealed memfd a berth daemon keeps its companion init
// binary in (see runtime/embedded/initbin.go), as /proc/<pid>/fd shows it.
static const char berth_init_memfd[] = "/memfd:berth-init (deleted)";

// berth_init_handoff runs before every other constructor (priority 101;
// nsenter's nsexec has none), so before libcontainer's namespace set-up
// and before the Go runtime starts. In a process libcontainer started as
// a container's init ("<exe> init" with _LIBCONTAINER_INITPIPE set) it
// looks for the sealed memfd in its parent, the berth daemon, and
// re-executes itself from it with the same arguments, environment and
// file descriptors: the small companion then does nsexec and
// libcontainer.Init instead of this binary, which skips this binary's
// package initialisation. Anything unexpected (no such memfd, seals
// missing, exec failing) falls through to the usual path. The companion
// itself (whose /proc/self/exe is that memfd) never hands off.
__attribute__((constructor(101))) static void berth_init_handoff(int argc, char **argv, char **envp) {
	if (argc < 2 || strcmp(argv[1], "init") != 0 || getenv("_LIBCONTAINER_INITPIPE") == NULL)
		return;
	const size_t want = sizeof(berth_init_memfd) - 1;
	char link[128];
	ssize_t n = readlink("/proc/self/exe", link, sizeof(link));
	if (n == (ssize_t)want && memcmp(link, berth_init_memfd, want) == 0)
		return;
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)getppid());
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	const int seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
	int fd = -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		n = readlinkat(dirfd(d), e->d_name, link, sizeof(link));
		if (n != (ssize_t)want || memcmp(link, berth_init_memfd, want) != 0)
			continue;
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		int s = fcntl(fd, F_GET_SEALS);
		if (s >= 0 && (s & seals) == seals)
			break;
		close(fd);
		fd = -1;
	}
	closedir(d);
	if (fd < 0)
		return;
	fexecve(fd, argv, envp);
	close(fd);
}
*/
import "C"
