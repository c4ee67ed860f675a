/* How many CPUs this process may use: the online CPUs, capped by the affinity mask
 * (sched_getaffinity: taskset, cpusets) and by the cgroup CPU quota (cgroup v2 cpu.max, or cgroup v1
 * cpu.cfs_quota_us / cpu.cfs_period_us), rounded up as recent JVMs and Go runtimes do. A container
 * started with `--cpus 1` on a 64-core host gets 1, not 64. The thread defaults of the CLIs and
 * the server's worker count follow it. */
#ifndef CNN_CPUS_H
#define CNN_CPUS_H

#include "../core/status.h"

typedef enum {
    CPUS_FROM_ONLINE = 0, /* no tighter bound than the online CPUs */
    CPUS_FROM_AFFINITY,   /* the scheduler affinity mask */
    CPUS_FROM_CGROUP_V2,  /* cpu.max */
    CPUS_FROM_CGROUP_V1,  /* cpu.cfs_quota_us / cpu.cfs_period_us */
} cpus_source;

typedef struct {
    int n_cpus;            /* min(online, affinity, ceil(quota)), >= 1 */
    int n_online;          /* sysconf(_SC_NPROCESSORS_ONLN); 0 = unknown */
    int n_affinity;        /* CPUs in the affinity mask; 0 = unknown */
    double quota_cpus;     /* quota / period of the tightest cgroup level; 0 = no quota */
    cpus_source source;    /* the bound that gave n_cpus */
    char quota_file[1024];  /* the file quota_cpus came from; "" = no quota found */
} cpus_info;

/* Short name of a source for log lines: "online", "affinity", "cgroup_v2", "cgroup_v1". */
const char *cpus_source_name(cpus_source s);

/* cgroup v2 cpu.max contents, "QUOTA PERIOD" in microseconds or "max PERIOD" (no limit): *quota_cpus
 * = QUOTA / PERIOD, 0 for "max". CNN_ERR_FORMAT for anything else (a trailing newline is fine). */
cnn_status cpus_parse_cpu_max(const char *text, double *quota_cpus);

/* cgroup v1 cpu.cfs_quota_us (-1 = no limit) and cpu.cfs_period_us contents: as cpus_parse_cpu_max. */
cnn_status cpus_parse_cfs(const char *quota_text, const char *period_text, double *quota_cpus);

/* The count from a cgroup file system mounted at cgroup_root (normally /sys/fs/cgroup), this
 * process's /proc/self/cgroup at self_cgroup, and the given online and affinity counts (<= 0:
 * unknown). cgroup v2 when cgroup_root/cgroup.controllers exists, else v1 (cpu controller at
 * cgroup_root/cpu or cpu,cpuacct). The process's own cgroup directory (its path from self_cgroup, or
 * the mount's root where that path is not visible, as inside a container) and each parent up to the
 * mount's root are read; the smallest quota wins. Unreadable or malformed files count as no quota. */
void cpus_detect_at(cpus_info *out, const char *cgroup_root, const char *self_cgroup, int n_online, int n_affinity);

/* cpus_detect_at on /sys/fs/cgroup, /proc/self/cgroup, sysconf and sched_getaffinity. */
void cpus_detect(cpus_info *out);

/* cpus_detect's count, at most max (a default thread count for the CLIs). */
int cpus_default_threads(int max);

#endif
