#include "cpus.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CPUS_PATH_BYTES 1024

const char *cpus_source_name(cpus_source s)
{
    switch (s) {
    case CPUS_FROM_AFFINITY: return "affinity";
    case CPUS_FROM_CGROUP_V2: return "cgroup_v2";
    case CPUS_FROM_CGROUP_V1: return "cgroup_v1";
    case CPUS_FROM_ONLINE: break;
    }
    return "online";
}

/* A whole decimal integer in lo..hi with at most a trailing newline; the end of it in *end. */
static int parse_int(const char *s, long long lo, long long hi, long long *out, const char **end)
{
    if (!s || !((*s >= '0' && *s <= '9') || *s == '-')) return 0;
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno || e == s || v < lo || v > hi) return 0;
    *out = v;
    *end = e;
    return 1;
}

static int only_newline(const char *s) { return !strcmp(s, "") || !strcmp(s, "\n"); }

cnn_status cpus_parse_cpu_max(const char *text, double *quota_cpus)
{
    long long quota = -1, period;
    const char *p;
    if (!text) return CNN_ERR_FORMAT;
    if (!strncmp(text, "max ", 4)) p = text + 3;
    else if (!parse_int(text, 1, INT64_MAX, &quota, &p)) return CNN_ERR_FORMAT;
    if (*p != ' ' || !parse_int(p + 1, 1, INT64_MAX, &period, &p) || !only_newline(p)) return CNN_ERR_FORMAT;
    *quota_cpus = quota < 0 ? 0.0 : (double)quota / (double)period;
    return CNN_OK;
}

cnn_status cpus_parse_cfs(const char *quota_text, const char *period_text, double *quota_cpus)
{
    long long quota, period;
    const char *p;
    if (!parse_int(quota_text, -1, INT64_MAX, &quota, &p) || quota == 0 || !only_newline(p)) return CNN_ERR_FORMAT;
    if (!parse_int(period_text, 1, INT64_MAX, &period, &p) || !only_newline(p)) return CNN_ERR_FORMAT;
    *quota_cpus = quota < 0 ? 0.0 : (double)quota / (double)period;
    return CNN_OK;
}

/* The first bytes of a small file as a string; 0 when it cannot be read. */
static int read_small(const char *path, char *buf, size_t buf_bytes)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, buf_bytes - 1, f);
    int ok = !ferror(f);
    fclose(f);
    buf[n] = '\0';
    return ok;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* This process's cgroup path for the v2 hierarchy (v1 = 0) or the v1 cpu controller (v1 = 1) from
 * /proc/self/cgroup lines "ID:CONTROLLERS:PATH"; "" when not listed. */
static void self_cgroup_path(const char *self_cgroup, int v1, char *path, size_t path_bytes)
{
    path[0] = '\0';
    FILE *f = fopen(self_cgroup, "r");
    if (!f) return;
    char line[CPUS_PATH_BYTES + 256];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        int match = 0;
        if (!v1) match = !strcmp(line, "0") && c1 + 1 == c2;
        else
            for (char *save = NULL, *tok = strtok_r(c1 + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                match |= !strcmp(tok, "cpu");
        if (match && strlen(c2 + 1) < path_bytes) {
            snprintf(path, path_bytes, "%s", c2 + 1);
            break;
        }
    }
    fclose(f);
}

/* path = dir + "/" + name; 0 when it does not fit. */
static int join(char *path, size_t path_bytes, const char *dir, const char *name)
{
    int n = snprintf(path, path_bytes, "%s/%s", dir, name);
    return n > 0 && (size_t)n < path_bytes;
}

/* The quota of one cgroup directory; 0 when it has none or its files cannot be read. */
static double dir_quota(const char *dir, int v1, char *file, size_t file_bytes)
{
    char path[CPUS_PATH_BYTES], text[128], period[128];
    double q = 0.0;
    if (!v1) {
        if (!join(path, sizeof path, dir, "cpu.max") || !read_small(path, text, sizeof text) ||
            cpus_parse_cpu_max(text, &q) != CNN_OK)
            return 0.0;
    } else {
        if (!join(path, sizeof path, dir, "cpu.cfs_period_us") || !read_small(path, period, sizeof period) ||
            !join(path, sizeof path, dir, "cpu.cfs_quota_us") || !read_small(path, text, sizeof text) ||
            cpus_parse_cfs(text, period, &q) != CNN_OK)
            return 0.0;
    }
    if (q > 0.0 && (size_t)snprintf(file, file_bytes, "%s", path) >= file_bytes) return 0.0;
    return q;
}

/* Smallest quota from the process's cgroup directory under mount up to mount itself. */
static double hierarchy_quota(const char *mount, const char *self_cgroup, int v1, char *file, size_t file_bytes)
{
    char rel[CPUS_PATH_BYTES], dir[CPUS_PATH_BYTES];
    self_cgroup_path(self_cgroup, v1, rel, sizeof rel);
    size_t n_mount = strlen(mount);
    if (n_mount >= sizeof dir) return 0.0;
    int n = snprintf(dir, sizeof dir, "%s%s", mount, rel[0] == '/' && rel[1] ? rel : "");
    /* Inside a container the listed path is often the host's, while the container's own cgroup is
     * what is mounted: then only the mount's root is ours. */
    if (n < 0 || (size_t)n >= sizeof dir || !is_dir(dir)) dir[n_mount] = '\0';
    double best = 0.0;
    for (;;) {
        char level_file[CPUS_PATH_BYTES];
        double q = dir_quota(dir, v1, level_file, sizeof level_file);
        if (q > 0.0 && (best == 0.0 || q < best) && (size_t)snprintf(file, file_bytes, "%s", level_file) < file_bytes)
            best = q;
        char *slash = strrchr(dir + n_mount, '/');
        if (strlen(dir) <= n_mount || !slash) break;
        *slash = '\0';
    }
    return best;
}

void cpus_detect_at(cpus_info *out, const char *cgroup_root, const char *self_cgroup, int n_online, int n_affinity)
{
    memset(out, 0, sizeof *out);
    out->n_online = n_online > 0 ? n_online : 0;
    out->n_affinity = n_affinity > 0 ? n_affinity : 0;
    char path[CPUS_PATH_BYTES];
    struct stat st;
    int v2 = join(path, sizeof path, cgroup_root, "cgroup.controllers") && stat(path, &st) == 0;
    cpus_source quota_source = CPUS_FROM_CGROUP_V2;
    if (v2) {
        out->quota_cpus = hierarchy_quota(cgroup_root, self_cgroup, 0, out->quota_file, sizeof out->quota_file);
    } else {
        quota_source = CPUS_FROM_CGROUP_V1;
        static const char *const v1_dirs[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
        for (size_t i = 0; i < sizeof v1_dirs / sizeof v1_dirs[0] && out->quota_cpus == 0.0; i++) {
            if (join(path, sizeof path, cgroup_root, v1_dirs[i]) && is_dir(path))
                out->quota_cpus = hierarchy_quota(path, self_cgroup, 1, out->quota_file, sizeof out->quota_file);
        }
    }
    /* Each bound replaces the count only when strictly tighter: the source named is the first that
     * reached the final count (online, then affinity, then the quota). */
    int n = out->n_online > 0 ? out->n_online : 1;
    out->source = CPUS_FROM_ONLINE;
    if (out->n_affinity > 0 && out->n_affinity < n) {
        n = out->n_affinity;
        out->source = CPUS_FROM_AFFINITY;
    }
    if (out->quota_cpus > 0.0) {
        double q = ceil(out->quota_cpus - 1e-9); /* 1.0000000001 from rounding stays 1 */
        int nq = q < 1.0 ? 1 : q > 1e6 ? 1000000 : (int)q;
        if (nq < n) {
            n = nq;
            out->source = quota_source;
        }
    }
    out->n_cpus = n;
}

void cpus_detect(cpus_info *out)
{
    long n_online = sysconf(_SC_NPROCESSORS_ONLN);
    int n_affinity = 0;
    /* A mask large enough for any machine this may run on; CPU_COUNT_S counts the set bits. */
    const int max_cpus = 8192;
    cpu_set_t *set = CPU_ALLOC(max_cpus);
    if (set) {
        size_t set_bytes = CPU_ALLOC_SIZE(max_cpus);
        CPU_ZERO_S(set_bytes, set);
        if (sched_getaffinity(0, set_bytes, set) == 0) n_affinity = CPU_COUNT_S(set_bytes, set);
        CPU_FREE(set);
    }
    cpus_detect_at(out, "/sys/fs/cgroup", "/proc/self/cgroup", n_online > 0 && n_online < INT32_MAX ? (int)n_online : 0,
                   n_affinity);
}

int cpus_default_threads(int max)
{
    cpus_info c;
    cpus_detect(&c);
    return c.n_cpus < max ? c.n_cpus : max;
}
