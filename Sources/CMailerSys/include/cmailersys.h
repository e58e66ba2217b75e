#ifndef MAILER_CSYSTEM_H
#define MAILER_CSYSTEM_H

#include <spawn.h>
#include <sys/types.h>

/// posix_spawn_file_actions_addclosefrom_np is _GNU_SOURCE-only in glibc's headers.
int csystem_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/// prctl(PR_SET_NO_NEW_PRIVS, 1): no exec may ever regain privileges.
int csystem_set_no_new_privs(void);

/// prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` when the parent dies.
int csystem_set_parent_death_signal(int sig);

/// pipe2(fds, O_CLOEXEC | flags).
int csystem_pipe_cloexec(int fds[2], int flags);

/// setresuid / setresgid: set real, effective and saved ids at once.
int csystem_setresuid(uid_t uid);
int csystem_setresgid(gid_t gid);

/// rename(from, to) that fails with EEXIST instead of replacing `to` (renameat2 RENAME_NOREPLACE;
/// link + unlink where the file system does not support it).
int csystem_rename_noreplace(const char *from, const char *to);

/// sched_setscheduler(0, SCHED_BATCH): the calling thread, and every thread it starts later, no
/// longer preempts a running thread when it wakes up (same CPU share as before).
int csystem_sched_batch(void);

#endif
