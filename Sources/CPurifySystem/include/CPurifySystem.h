// Prefixed shims for the Linux calls and types Swift's Glibc module does not import because
// they sit behind _GNU_SOURCE (after CNIOLinux's pattern in apple/swift-nio).
#ifndef C_PURIFY_SYSTEM_H
#define C_PURIFY_SYSTEM_H

#include <sys/types.h>

/// The credentials of the process on the other end of a connected Unix socket (SO_PEERCRED).
typedef struct {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} CPurifyPeerCredentials;

/// Reads the peer's credentials of a connected Unix socket. Returns 0, or -1 with errno set.
int CPurify_peerCredentials(int fd, CPurifyPeerCredentials *credentials);

/// Reads the peer's supplementary groups (SO_PEERGROUPS, Linux 4.13+) into `groups`, which
/// holds `*count` entries; on return `*count` is how many the peer has. Returns 0, or -1 with
/// errno set (ERANGE: `groups` too small, `*count` says how many are needed).
int CPurify_peerGroups(int fd, gid_t *groups, int *count);

/// accept4(2) with SOCK_CLOEXEC | SOCK_NONBLOCK. Returns the new descriptor, or -1 with errno set.
int CPurify_acceptNonblocking(int fd);

/// Sets O_NONBLOCK on `fd` (fcntl is variadic, which Swift does not import). Returns 0, or -1
/// with errno set.
int CPurify_setNonblocking(int fd);

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of replacing `newPath`.
int CPurify_renameNoReplace(int oldDirFD, const char *oldPath, int newDirFD, const char *newPath);

/// eventfd(2) with EFD_NONBLOCK | EFD_CLOEXEC: a descriptor other threads write to wake a poll.
int CPurify_eventfdNonblocking(void);

/// Returns the free memory at the top of every malloc heap (each thread's arena included) to
/// the system: malloc_trim(0), from <malloc.h>, which Swift's Glibc module does not import.
void CPurify_trimMallocHeaps(void);

/// Names the calling thread (pthread_setname_np; at most 15 bytes are kept).
void CPurify_setCurrentThreadName(const char *name);

#endif
