//! The system calls an instance's program may make.
//!
//! An allowlist: every call not listed fails with `EPERM`. It follows
//! Docker's default profile (what ordinary programs need: files, sockets,
//! processes, threads, timers, System V and POSIX IPC, ...) and is
//! stricter where one tenant could reach another or the kernel's rarer
//! corners:
//!
//! - no new namespaces: `unshare`, `setns`, and `clone` with any
//!   `CLONE_NEW*` flag (`clone3`, whose flags a filter cannot read, fails
//!   with `ENOSYS`, so the C library falls back to `clone`);
//! - no mounts of any kind, `pivot_root` or `chroot`;
//! - no `ptrace`, `process_vm_readv`/`writev`, `kcmp`, `pidfd_getfd` (Docker
//!   allows `ptrace`; here an instance never inspects another process);
//! - no kernel modules, `kexec`, `reboot`, `swapon`, `acct`, clock setting;
//! - no keyrings (`keyctl`, `add_key`, `request_key`), `bpf`,
//!   `perf_event_open`, `userfaultfd`, `io_uring`, `fanotify_init`,
//!   `open_by_handle_at`, NUMA policy calls;
//! - `socket` for every family but `AF_VSOCK` (raw and packet sockets
//!   also need `CAP_NET_RAW`, which no instance has);
//! - `personality` only for the values programs use to query or to run
//!   32-bit code.
//!
//! Written against the `seccompiler` crate (Firecracker's), which builds
//! the BPF program in Rust from syscall numbers; no C library is needed.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::SandboxError;

/// Namespace flags a `clone` must not carry: `CLONE_NEWNS`,
/// `CLONE_NEWCGROUP`, `CLONE_NEWUTS`, `CLONE_NEWIPC`, `CLONE_NEWUSER`,
/// `CLONE_NEWPID`, `CLONE_NEWNET`.
const CLONE_NAMESPACES: u64 = 0x7E02_0000;

/// `AF_VSOCK`: sockets to the hypervisor.
const AF_VSOCK: u64 = 40;

/// `personality` values allowed: the current one (`PER_LINUX`), a 32-bit
/// one (`PER_LINUX32`), with `UNAME26`, and the query (`0xffffffff`).
const PERSONALITIES: [u64; 5] = [0, 8, 0x20000, 0x20008, 0xffff_ffff];

/// Calls allowed on every architecture vdc builds for.
const COMMON: &[i64] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_adjtimex,
    libc::SYS_bind,
    libc::SYS_brk,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_chdir,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_getres,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_connect,
    libc::SYS_copy_file_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_fanotify_mark,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_fcntl,
    libc::SYS_fdatasync,
    libc::SYS_fgetxattr,
    libc::SYS_flistxattr,
    libc::SYS_flock,
    libc::SYS_fremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_get_robust_list,
    libc::SYS_getcpu,
    libc::SYS_getcwd,
    libc::SYS_getdents64,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getgroups,
    libc::SYS_getitimer,
    libc::SYS_getpeername,
    libc::SYS_getpgid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_getpriority,
    libc::SYS_getrandom,
    libc::SYS_getresgid,
    libc::SYS_getresuid,
    libc::SYS_getrlimit,
    libc::SYS_getrusage,
    libc::SYS_getsid,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_gettid,
    libc::SYS_gettimeofday,
    libc::SYS_getuid,
    libc::SYS_getxattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_rm_watch,
    libc::SYS_io_cancel,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_ioctl,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_kill,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_restrict_self,
    libc::SYS_lgetxattr,
    libc::SYS_linkat,
    libc::SYS_listen,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_lseek,
    libc::SYS_lsetxattr,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_mincore,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_mlockall,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify,
    libc::SYS_mq_open,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink,
    libc::SYS_mremap,
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_msync,
    libc::SYS_munlock,
    libc::SYS_munlockall,
    libc::SYS_munmap,
    libc::SYS_name_to_handle_at,
    libc::SYS_nanosleep,
    libc::SYS_newfstatat,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pipe2,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_ppoll,
    libc::SYS_prctl,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_prlimit64,
    libc::SYS_process_mrelease,
    libc::SYS_pselect6,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_read,
    libc::SYS_readahead,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmmsg,
    libc::SYS_recvmsg,
    libc::SYS_remap_file_pages,
    libc::SYS_removexattr,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getattr,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_setattr,
    libc::SYS_sched_setparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_yield,
    libc::SYS_seccomp,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_sendfile,
    libc::SYS_sendmmsg,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_set_robust_list,
    libc::SYS_set_tid_address,
    libc::SYS_setfsgid,
    libc::SYS_setfsuid,
    libc::SYS_setgid,
    libc::SYS_setgroups,
    libc::SYS_setitimer,
    libc::SYS_setpgid,
    libc::SYS_setpriority,
    libc::SYS_setregid,
    libc::SYS_setresgid,
    libc::SYS_setresuid,
    libc::SYS_setreuid,
    libc::SYS_setrlimit,
    libc::SYS_setsid,
    libc::SYS_setsockopt,
    libc::SYS_setuid,
    libc::SYS_setxattr,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd4,
    libc::SYS_socketpair,
    libc::SYS_splice,
    libc::SYS_statfs,
    libc::SYS_statx,
    libc::SYS_symlinkat,
    libc::SYS_sync,
    libc::SYS_sync_file_range,
    libc::SYS_syncfs,
    libc::SYS_sysinfo,
    libc::SYS_tee,
    libc::SYS_tgkill,
    libc::SYS_timer_create,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime,
    libc::SYS_timer_settime,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    libc::SYS_times,
    libc::SYS_tkill,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_uname,
    libc::SYS_unlinkat,
    libc::SYS_utimensat,
    libc::SYS_vmsplice,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_write,
    libc::SYS_writev,
];

/// The older calls x86-64 still has and its programs still make.
#[cfg(target_arch = "x86_64")]
const ARCH: &[i64] = &[
    libc::SYS_access,
    libc::SYS_alarm,
    libc::SYS_arch_prctl,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_creat,
    libc::SYS_dup2,
    libc::SYS_epoll_create,
    libc::SYS_epoll_wait,
    libc::SYS_eventfd,
    libc::SYS_fork,
    libc::SYS_futimesat,
    libc::SYS_get_thread_area,
    libc::SYS_getdents,
    libc::SYS_getpgrp,
    libc::SYS_inotify_init,
    libc::SYS_lchown,
    libc::SYS_link,
    libc::SYS_lstat,
    libc::SYS_mkdir,
    libc::SYS_mknod,
    libc::SYS_modify_ldt,
    libc::SYS_open,
    libc::SYS_pause,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_readlink,
    libc::SYS_rename,
    libc::SYS_rmdir,
    libc::SYS_select,
    libc::SYS_set_thread_area,
    libc::SYS_signalfd,
    libc::SYS_stat,
    libc::SYS_symlink,
    libc::SYS_time,
    libc::SYS_unlink,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_vfork,
];

#[cfg(not(target_arch = "x86_64"))]
const ARCH: &[i64] = &[];

// === types ===

/// The two filters an instance's program runs under, compiled: the
/// allowlist, and a second one that makes `clone3` fail with `ENOSYS`
/// rather than `EPERM` (installed last, it is consulted first; the kernel
/// takes the first answer of the highest precedence, and both answer with
/// an error).
#[derive(Clone, Debug)]
pub struct Filters {
    allowlist: BpfProgram,
    clone3: BpfProgram,
}

// === impl Filters ===

impl Filters {
    /// Compiles both filters for the architecture this binary runs on.
    pub fn build() -> Result<Filters, SandboxError> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| invalid(&e))?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON
            .iter()
            .chain(ARCH)
            .map(|&call| (call, Vec::new()))
            .collect();
        rules.insert(
            libc::SYS_clone,
            vec![rule(
                // The flags: first on every architecture vdc builds for.
                0,
                SeccompCmpOp::MaskedEq(CLONE_NAMESPACES),
                0,
            )?],
        );
        rules.insert(libc::SYS_socket, vec![rule(0, SeccompCmpOp::Ne, AF_VSOCK)?]);
        rules.insert(
            libc::SYS_personality,
            PERSONALITIES
                .iter()
                .map(|&p| rule(0, SeccompCmpOp::Eq, p))
                .collect::<Result<_, _>>()?,
        );
        let allowlist = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            arch,
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| invalid(&e))?;
        let clone3 = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| invalid(&e))?;
        Ok(Filters { allowlist, clone3 })
    }

    /// Installs both filters on the calling thread (and sets
    /// `no_new_privs`, which installing a filter without `CAP_SYS_ADMIN`
    /// requires). For the program's process right before `exec`; the
    /// filters are inherited by everything it starts.
    pub fn apply(&self) -> Result<(), SandboxError> {
        for program in [&self.allowlist, &self.clone3] {
            seccompiler::apply_filter(program).map_err(|e| {
                SandboxError::new("install the system-call filter", std::io::Error::other(e))
            })?;
        }
        Ok(())
    }
}

fn rule(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| invalid(&e))
}

fn invalid(e: &dyn std::fmt::Display) -> SandboxError {
    SandboxError::new(
        "build the system-call filter",
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_for_this_architecture() {
        let filters = Filters::build().unwrap();
        assert!(filters.allowlist.len() > COMMON.len());
        assert!(!filters.clone3.is_empty());
    }

    #[test]
    fn what_reaches_past_an_instance_is_not_allowed() {
        for call in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_setns,
            libc::SYS_unshare,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_kexec_load,
            libc::SYS_bpf,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_io_uring_setup,
            libc::SYS_userfaultfd,
            libc::SYS_perf_event_open,
            libc::SYS_open_by_handle_at,
        ] {
            assert!(
                !COMMON.contains(&call) && !ARCH.contains(&call),
                "syscall {call} is allowed"
            );
        }
    }

    #[test]
    fn what_servers_use_is_allowed() {
        // Among them what PostgreSQL, nginx, redis and Python call.
        for call in [
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_epoll_wait,
            libc::SYS_sendfile,
            libc::SYS_shmget,
            libc::SYS_semop,
            libc::SYS_memfd_create,
            libc::SYS_prctl,
            libc::SYS_setsid,
            libc::SYS_fsync,
            libc::SYS_sched_setaffinity,
        ] {
            assert!(
                COMMON.contains(&call) || ARCH.contains(&call),
                "syscall {call} is not allowed"
            );
        }
    }

    #[test]
    fn no_call_is_listed_twice() {
        let mut all: Vec<i64> = COMMON.iter().chain(ARCH).copied().collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
