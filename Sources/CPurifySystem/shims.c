#define _GNU_SOURCE
#include "CPurifySystem.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

int CPurify_peerCredentials(int fd, CPurifyPeerCredentials *credentials) {
    struct ucred ucred;
    socklen_t length = sizeof(ucred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &ucred, &length) != 0) {
        return -1;
    }
    credentials->pid = ucred.pid;
    credentials->uid = ucred.uid;
    credentials->gid = ucred.gid;
    return 0;
}

int CPurify_peerGroups(int fd, gid_t *groups, int *count) {
    socklen_t length = (socklen_t)(*count * (int)sizeof(gid_t));
    int result = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &length);
    *count = (int)(length / sizeof(gid_t));
    return result;
}

int CPurify_acceptNonblocking(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

int CPurify_setNonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int CPurify_renameNoReplace(int oldDirFD, const char *oldPath, int newDirFD, const char *newPath) {
    return renameat2(oldDirFD, oldPath, newDirFD, newPath, RENAME_NOREPLACE);
}

void CPurify_setCurrentThreadName(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof(truncated) - 1);
    truncated[sizeof(truncated) - 1] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

int CPurify_eventfdNonblocking(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void CPurify_trimMallocHeaps(void) {
    malloc_trim(0);
}
