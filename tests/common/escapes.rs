//! Escape probes that need nothing but a POSIX shell and busybox's applets, each with what it
//! must show: run in a session on the host root by tests/probes.rs and in a session on an image
//! by tests/images.rs, so that both roots are held to the same verdicts.

use super::results;

pub struct Escape {
    /// What it tries, as printed beside its output.
    pub what: &'static str,
    pub script: &'static str,
    /// Panics with the output when the escape got anywhere.
    pub verdict: fn(&str),
}

/// Every escape of this list, for a root that has the applets they use.
pub const ALL: &[&Escape] = &[
    &PEEL_PROC_MASKS,
    &KERNEL_COMMAND_LINE,
    &CGROUP_V1_RELEASE_AGENT,
    &RAISE_CGROUP_LIMITS,
    &GLOBAL_SYSCTLS,
    &SYSRQ_TRIGGER,
    &DEVICE_NODES,
];

pub const PEEL_PROC_MASKS: Escape = Escape {
    what: "unmount every /proc mask, then read what was under it",
    script: "for m in kcore keys timer_list sched_debug kallsyms kpagecount kpageflags sysrq-trigger sys irq bus fs; do \
               umount /proc/$m 2>/dev/null; done; \
             for f in kcore timer_list sched_debug kpagecount kpageflags; do \
               n=$(head -c 4096 /proc/$f 2>/dev/null | wc -c); echo RESULT $f $n; done; \
             grep -v '^0000000000000000 ' /proc/kallsyms | head -3 | while read -r l; do echo \"ADDR $l\"; done; echo done",
    verdict: |out| {
        let r = results(out);
        for f in ["kcore", "timer_list", "sched_debug", "kpagecount", "kpageflags"] {
            assert_eq!(r[f], "0", "/proc/{f} readable after unmounting its mask: {out}");
        }
        assert!(!out.contains("ADDR "), "kernel addresses leak through /proc/kallsyms: {out}");
    },
};

pub const KERNEL_COMMAND_LINE: Escape = Escape {
    what: "read the host's kernel command line and build configuration",
    script: "echo RESULT cmdline $(cat /proc/cmdline | wc -c); \
             echo RESULT config $(cat /proc/config.gz 2>/dev/null | wc -c); echo done",
    verdict: |out| {
        assert!(!std::fs::read("/proc/cmdline").unwrap().is_empty(), "the host has a kernel command line to hide");
        let r = results(out);
        assert_eq!(r["cmdline"], "0", "the host's kernel command line is readable: {out}");
        assert_eq!(r["config"], "0", "the host's kernel config is readable: {out}");
    },
};

pub const CGROUP_V1_RELEASE_AGENT: Escape = Escape {
    what: "mount -t cgroup -o rdma (and other v1 controllers), write release_agent and notify_on_release",
    script: "for o in rdma memory pids cpu freezer devices none,name=nsplayprobe; do d=/tmp/cg-${o%%,*}; mkdir -p $d; \
               if mount -t cgroup -o $o cgroup $d 2>/dev/null; then echo mounted $o; \
                 echo /tmp/pwn > $d/release_agent 2>/dev/null && echo RESULT wrote-$o release_agent; \
                 echo 1 > $d/notify_on_release 2>/dev/null && echo RESULT notify-$o yes; \
               else echo refused $o; fi; done; echo done",
    verdict: |out| {
        assert!(out.contains("done"), "{out}");
        assert!(results(out).is_empty(), "{out}");
    },
};

pub const RAISE_CGROUP_LIMITS: Escape = Escape {
    what: "mount the cgroup file systems inside and raise memory, pids and cpu limits",
    script: "mkdir -p /tmp/u /tmp/m /tmp/p /tmp/c; mount -t cgroup2 none /tmp/u 2>/dev/null; \
             mount -t cgroup -o memory c /tmp/m 2>/dev/null; mount -t cgroup -o pids c /tmp/p 2>/dev/null; \
             mount -t cgroup -o cpu c /tmp/c 2>/dev/null; \
             for f in u/memory.max u/pids.max u/cpu.max m/memory.limit_in_bytes m/memory.memsw.limit_in_bytes p/pids.max c/cpu.cfs_quota_us; do \
               [ -e /tmp/$f ] || continue; echo max > /tmp/$f 2>/dev/null && echo RESULT raised $f; \
               echo -1 > /tmp/$f 2>/dev/null && echo RESULT raised $f; done; echo done",
    verdict: |out| {
        assert!(out.contains("done"), "{out}");
        assert!(!out.contains("RESULT raised"), "{out}");
    },
};

pub const GLOBAL_SYSCTLS: Escape = Escape {
    what: "unmount the read-only /proc/sys, write kernel.* and vm.* sysctls",
    script: "umount /proc/sys 2>/dev/null; for f in kernel/core_pattern kernel/modprobe kernel/panic kernel/randomize_va_space \
             kernel/sysrq kernel/unprivileged_bpf_disabled kernel/yama/ptrace_scope vm/drop_caches vm/overcommit_memory fs/file-max; do \
               [ -e /proc/sys/$f ] || continue; echo 1 > /proc/sys/$f 2>/dev/null && echo RESULT wrote $f; done; echo done",
    verdict: |out| {
        assert!(out.contains("done"), "{out}");
        assert!(!out.contains("RESULT wrote"), "{out}");
        assert!(!std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap().starts_with("1\n"));
    },
};

pub const SYSRQ_TRIGGER: Escape = Escape {
    what: "write /proc/sysrq-trigger, with and without its read-only mount",
    script: "echo h > /proc/sysrq-trigger 2>/dev/null && echo RESULT wrote masked; \
             umount /proc/sysrq-trigger 2>/dev/null; echo h > /proc/sysrq-trigger 2>/dev/null && echo RESULT wrote unmasked; echo done",
    verdict: |out| {
        assert!(out.contains("done"), "{out}");
        assert!(!out.contains("RESULT wrote"), "{out}");
    },
};

pub const DEVICE_NODES: Escape = Escape {
    what: "mknod block and char devices, mount devtmpfs, open host disks and memory",
    script: "mknod /tmp/sda b 8 0 2>/dev/null && echo RESULT made block; mknod /tmp/mem c 1 1 2>/dev/null && echo RESULT made char; \
             mkdir -p /tmp/d; mount -t devtmpfs none /tmp/d 2>/dev/null && echo RESULT mounted devtmpfs; \
             for d in /dev/vda /dev/sda /dev/nvme0n1 /dev/xvda /dev/mem /dev/kmem /dev/port /dev/kmsg /dev/loop0 /dev/loop-control /dev/fuse /dev/net/tun; do \
               head -c1 $d >/dev/null 2>&1 && echo RESULT opened $d; done; echo RESULT dev $(ls /dev | tr '\\n' ' '); echo done",
    verdict: |out| {
        assert!(out.contains("done"), "{out}");
        let r = results(out);
        assert!(!r.keys().any(|k| k == "made" || k == "mounted" || k == "opened"), "{out}");
        let dev: Vec<&str> = r["dev"].split_whitespace().collect();
        assert_eq!(
            dev,
            [
                "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
                "urandom", "zero"
            ],
            "{out}"
        );
    },
};
