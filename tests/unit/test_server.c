/* Unit tests of the HTTP service's pure helpers: Content-Type and multipart parsing, flag and
 * environment parsing, the CPU count from cgroup files. The service itself is exercised end to end
 * by test_e2e.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../server/config.h"
#include "../../server/cpus.h"
#include "../../server/multipart.h"
#include "../test.h"

static cnn_status parse(const char *body, const char *boundary, multipart_part *parts, int *n, char *err)
{
    return multipart_parse((const uint8_t *)body, strlen(body), boundary, parts, MULTIPART_MAX_PARTS, n, err, 256);
}

static void test_media_type(void)
{
    test_begin();
    char t[64];
    multipart_media_type(" Image/JPEG; q=1", t, sizeof t);
    T_CHECK(!strcmp(t, "image/jpeg"), "got '%s'", t);
    multipart_media_type(NULL, t, sizeof t);
    T_CHECK(!strcmp(t, ""), "NULL gives '%s'", t);
    char b[80], err[256];
    T_CHECK(multipart_boundary("multipart/form-data; boundary=abc123", b, sizeof b, err, sizeof err) == CNN_OK &&
                !strcmp(b, "abc123"), "plain boundary");
    T_CHECK(multipart_boundary("multipart/form-data; charset=x; boundary=\"a b;c\"", b, sizeof b, err, sizeof err) ==
                    CNN_OK && !strcmp(b, "a b;c"), "quoted boundary: '%s'", b);
    T_CHECK(multipart_boundary("multipart/form-data", b, sizeof b, err, sizeof err) == CNN_ERR_FORMAT, "missing boundary");
    T_CHECK(multipart_boundary("multipart/form-data; boundary=\"unterminated", b, sizeof b, err, sizeof err) ==
                CNN_ERR_FORMAT, "unterminated quote");
    char long_b[200] = "multipart/form-data; boundary=";
    memset(long_b + strlen(long_b), 'x', 71);
    T_CHECK(multipart_boundary(long_b, b, sizeof b, err, sizeof err) == CNN_ERR_FORMAT, "71-char boundary accepted");
    test_end("content-type and boundary parsing");
}

static void test_multipart_ok(void)
{
    test_begin();
    const char *body = "preamble\r\n--XB\r\n"
                       "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
                       "mnv3s\r\n--XB\r\n"
                       "Content-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
                       "Content-Type: image/jpeg\r\n\r\n"
                       "\xff\xd8\r\n--X\x00Y\r\n--XB--\r\nepilogue";
    size_t n_body = 0;
    /* The body contains a NUL: measure up to the epilogue by hand. */
    const char *tail = "epilogue";
    for (size_t i = 0;; i++)
        if (!memcmp(body + i, "--XB--", 6)) {
            n_body = i + 8 + strlen(tail);
            break;
        }
    multipart_part parts[MULTIPART_MAX_PARTS];
    int n = 0;
    char err[256] = "";
    cnn_status st = multipart_parse((const uint8_t *)body, n_body, "XB", parts, MULTIPART_MAX_PARTS, &n, err, sizeof err);
    T_CHECK(st == CNN_OK, "status %d: %s", st, err);
    T_CHECK(n == 2, "n_parts %d", n);
    if (st == CNN_OK && n == 2) {
        T_CHECK(!strcmp(parts[0].name, "model") && !parts[0].has_filename, "part 0 name '%s'", parts[0].name);
        T_CHECK(parts[0].n_bytes == 5 && !memcmp(parts[0].data, "mnv3s", 5), "part 0 value");
        T_CHECK(!strcmp(parts[1].name, "image") && parts[1].has_filename, "part 1 name '%s'", parts[1].name);
        T_CHECK(!strcmp(parts[1].content_type, "image/jpeg"), "part 1 type '%s'", parts[1].content_type);
        /* Data keeps a CRLF and a near-boundary that are not the delimiter. */
        T_CHECK(parts[1].n_bytes == 9 && !memcmp(parts[1].data, "\xff\xd8\r\n--X\x00Y", 9), "part 1 data (%zu bytes)",
                parts[1].n_bytes);
    }
    test_end("multipart: fields, file, preamble, epilogue, binary data");
}

static void test_multipart_malformed(void)
{
    test_begin();
    multipart_part parts[MULTIPART_MAX_PARTS];
    int n = 0;
    char err[256];
    static const struct {
        const char *body, *why;
    } bad[] = {
        {"garbage", "no boundary"},
        {"--XB\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc", "not closed"},
        {"--XB\r\nContent-Disposition: form-data; name=\"image\"\r\nabc\r\n--XB--", "headers not terminated"},
        {"--XB\r\nContent-Type: image/png\r\n\r\nabc\r\n--XB--", "no Content-Disposition"},
        {"--XB\r\nContent-Disposition: attachment; name=\"image\"\r\n\r\nabc\r\n--XB--", "not form-data"},
        {"--XB\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--XB--", "no name"},
        {"--XBjunk\r\n\r\n--XB--", "boundary not followed by CRLF"},
        {"--XB\r\nno colon here\r\n\r\nabc\r\n--XB--", "header without colon"},
        {"--XB\r\n\r\nabc\r\n--XB--", "part without headers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cnn_status st = parse(bad[i].body, "XB", parts, &n, err);
        T_CHECK(st == CNN_ERR_FORMAT, "%s: status %d", bad[i].why, st);
        T_CHECK(strstr(err, "malformed multipart") != NULL, "%s: message '%s'", bad[i].why, err);
    }
    /* More parts than allowed. */
    char many[4096] = "";
    for (int i = 0; i < MULTIPART_MAX_PARTS + 1; i++)
        strcat(many, "--XB\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n");
    strcat(many, "--XB--");
    T_CHECK(parse(many, "XB", parts, &n, err) == CNN_ERR_FORMAT, "too many parts accepted");
    /* Empty form: valid, no parts. */
    T_CHECK(parse("--XB--\r\n", "XB", parts, &n, err) == CNN_OK && n == 0, "empty form: n=%d", n);
    test_end("multipart: malformed bodies are CNN_ERR_FORMAT with a message");
}

static void test_config(void)
{
    test_begin();
    serve_config cfg;
    char err[256] = "";
    config_defaults(&cfg);
    setenv("CNNSERVE_PORT", "9000", 1);
    setenv("CNNSERVE_MAX_BODY_BYTES", "1MiB", 1);
    setenv("CNNSERVE_LOG_FORMAT", "json", 1);
    char *argv1[] = {"--port", "9100", "--workers=3", "--models", "mnv3s,shufflenet", "--timeout", "5"};
    cnn_status st = config_parse(&cfg, 7, argv1, err, sizeof err);
    T_CHECK(st == CNN_OK, "parse: %s", err);
    T_CHECK(cfg.port == 9100, "flag must win over the environment: port %d", cfg.port);
    T_CHECK(cfg.max_body_bytes == 1 << 20, "env max body %lld", (long long)cfg.max_body_bytes);
    T_CHECK(cfg.log_format == LOG_FORMAT_JSON, "env log format");
    T_CHECK(cfg.n_workers == 3 && cfg.queue_depth == cfg.max_connections && cfg.header_timeout_s == 10 &&
                cfg.max_queue_wait_ms == 2500 /* half of --timeout 5 */,
            "workers %d queue %d (default: --max-connections)", cfg.n_workers, cfg.queue_depth);
    T_CHECK(!strcmp(cfg.models, "mnv3s,shufflenet") && cfg.timeout_s == 5, "models/timeout");
    unsetenv("CNNSERVE_PORT");
    unsetenv("CNNSERVE_MAX_BODY_BYTES");
    unsetenv("CNNSERVE_LOG_FORMAT");

    static const struct {
        const char *flag, *value, *needle;
    } bad[] = {
        {"--port", "70000", "--port"},         {"--workers", "0", "--workers"},
        {"--max-body-bytes", "12x", "--max-body-bytes"}, {"--log-format", "xml", "--log-format"},
        {"--bogus", "1", "unknown flag"},      {"--timeout", "", "--timeout"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config_defaults(&cfg);
        char *argv2[] = {(char *)bad[i].flag, (char *)bad[i].value};
        err[0] = '\0';
        st = config_parse(&cfg, 2, argv2, err, sizeof err);
        T_CHECK(st == CNN_ERR_ARG && strstr(err, bad[i].needle), "%s %s: status %d, '%s'", bad[i].flag, bad[i].value, st,
                err);
    }
    config_defaults(&cfg);
    setenv("CNNSERVE_QUEUE", "-1", 1);
    st = config_parse(&cfg, 0, NULL, err, sizeof err);
    T_CHECK(st == CNN_ERR_ARG && strstr(err, "CNNSERVE_QUEUE"), "bad env value: '%s'", err);
    unsetenv("CNNSERVE_QUEUE");
    config_defaults(&cfg);
    char *argv3[] = {"--port"};
    T_CHECK(config_parse(&cfg, 1, argv3, err, sizeof err) == CNN_ERR_ARG, "missing value accepted");

    int64_t v;
    T_CHECK(config_parse_bytes("20MiB", &v) == CNN_OK && v == 20 << 20, "20MiB");
    T_CHECK(config_parse_bytes("64k", &v) == CNN_OK && v == 64 << 10, "64k");
    T_CHECK(config_parse_bytes("-5", &v) == CNN_ERR_ARG, "negative bytes");
    T_CHECK(config_parse_int("12", 1, 10, &v) == CNN_ERR_ARG, "out of range int");
    T_CHECK(config_parse_int(" 5", 1, 10, &v) == CNN_ERR_ARG, "leading space");
    test_end("serve flags and CNNSERVE_* environment");
}

static void test_cpu_files(void)
{
    test_begin();
    static const struct {
        const char *text;
        double want; /* < 0: malformed */
    } cpu_max[] = {
        {"max 100000\n", 0.0}, {"150000 100000\n", 1.5}, {"50000 100000", 0.5}, {"200000 50000\n", 4.0},
        {"", -1}, {"max", -1}, {"100000\n", -1}, {"abc 100000", -1}, {"-5 100000", -1}, {"0 100000", -1},
        {"100000 0", -1}, {"1 2 3", -1}, {"100000 100000x", -1}, {"max  100000", -1}, {" 100000 100000", -1},
        {"100000 100000\n\n", -1}, {"99999999999999999999 100000", -1},
    };
    for (size_t i = 0; i < sizeof cpu_max / sizeof cpu_max[0]; i++) {
        double q = -7.0;
        cnn_status st = cpus_parse_cpu_max(cpu_max[i].text, &q);
        if (cpu_max[i].want < 0) T_CHECK(st == CNN_ERR_FORMAT, "cpu.max '%s' accepted as %g", cpu_max[i].text, q);
        else T_CHECK(st == CNN_OK && q == cpu_max[i].want, "cpu.max '%s': status %d, %g", cpu_max[i].text, st, q);
    }
    static const struct {
        const char *quota, *period;
        double want;
    } cfs[] = {
        {"-1\n", "100000\n", 0.0}, {"100000\n", "100000\n", 1.0}, {"250000", "100000", 2.5},
        {"0", "100000", -1}, {"-2", "100000", -1}, {"x", "100000", -1}, {"100000", "0", -1}, {"100000", "", -1},
    };
    for (size_t i = 0; i < sizeof cfs / sizeof cfs[0]; i++) {
        double q = -7.0;
        cnn_status st = cpus_parse_cfs(cfs[i].quota, cfs[i].period, &q);
        if (cfs[i].want < 0) T_CHECK(st == CNN_ERR_FORMAT, "cfs '%s' '%s' accepted as %g", cfs[i].quota, cfs[i].period, q);
        else T_CHECK(st == CNN_OK && q == cfs[i].want, "cfs '%s' '%s': status %d, %g", cfs[i].quota, cfs[i].period, st, q);
    }
    test_end("cpus: cgroup v2 cpu.max and v1 cfs quota parsers");
}

/* Writes text to dir/name (making dir and its parents). */
static int put_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0700);
            *p = '/';
        }
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static void rm_tree(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stdout, "# could not remove %s\n", dir);
}

static void test_cpus_detect(void)
{
    test_begin();
    char tmp[] = "/tmp/test_cpus_XXXXXX";
    if (!mkdtemp(tmp)) {
        test_skip("cpus: detection on sample cgroup trees", "mkdtemp failed");
        return;
    }
    char root[256], d[512], self[300];
    cpus_info c;
    snprintf(self, sizeof self, "%s/self_cgroup", tmp);

    /* cgroup v2: the tightest level of the process's path (/a/b) up to the root wins. */
    snprintf(root, sizeof root, "%s/v2", tmp);
    int ok = put_file(root, "cgroup.controllers", "cpu memory\n") && put_file(root, "cpu.max", "max 100000\n");
    snprintf(d, sizeof d, "%s/a", root);
    ok = ok && put_file(d, "cpu.max", "150000 100000\n");
    snprintf(d, sizeof d, "%s/a/b", root);
    ok = ok && put_file(d, "cpu.max", "max 100000\n") && put_file(tmp, "self_cgroup", "0::/a/b\n");
    T_CHECK(ok, "writing the v2 tree");
    cpus_detect_at(&c, root, self, 8, 8);
    T_CHECK(c.n_cpus == 2 && c.source == CPUS_FROM_CGROUP_V2 && c.quota_cpus == 1.5 && strstr(c.quota_file, "/v2/a/cpu.max"),
            "v2 /a/b: %d cpus from %s, quota %g in '%s'", c.n_cpus, cpus_source_name(c.source), c.quota_cpus, c.quota_file);
    /* Fewer online CPUs than the quota: the online count stays and says so. */
    cpus_detect_at(&c, root, self, 1, 1);
    T_CHECK(c.n_cpus == 1 && c.source == CPUS_FROM_ONLINE && c.quota_cpus == 1.5, "v2, 1 online: %d from %s",
            c.n_cpus, cpus_source_name(c.source));
    /* A path not visible here (a container's view): only the mount's root counts; no quota there, the
     * affinity mask bounds. */
    ok = put_file(tmp, "self_cgroup", "0::/machine.slice/libpod-1.scope\n");
    cpus_detect_at(&c, root, self, 8, 3);
    T_CHECK(ok && c.n_cpus == 3 && c.source == CPUS_FROM_AFFINITY && c.quota_cpus == 0.0 && !c.quota_file[0],
            "v2 foreign path: %d from %s, quota %g", c.n_cpus, cpus_source_name(c.source), c.quota_cpus);
    /* The container case: the quota in the mount's root; a fraction of a CPU rounds up to 1. */
    ok = put_file(root, "cpu.max", "20000 100000\n") && put_file(tmp, "self_cgroup", "0::/\n");
    cpus_detect_at(&c, root, self, 64, 64);
    T_CHECK(ok && c.n_cpus == 1 && c.source == CPUS_FROM_CGROUP_V2 && c.quota_cpus == 0.2, "v2 root 0.2: %d from %s",
            c.n_cpus, cpus_source_name(c.source));
    /* A malformed cpu.max counts as no quota; a missing /proc/self/cgroup as the mount's root. */
    ok = put_file(root, "cpu.max", "lots\n");
    snprintf(d, sizeof d, "%s/missing", tmp);
    cpus_detect_at(&c, root, d, 4, 0);
    T_CHECK(ok && c.n_cpus == 4 && c.source == CPUS_FROM_ONLINE && c.quota_cpus == 0.0, "v2 malformed: %d from %s",
            c.n_cpus, cpus_source_name(c.source));

    /* cgroup v1 (no cgroup.controllers): the cpu controller's cfs quota, -1 = none. */
    snprintf(root, sizeof root, "%s/v1", tmp);
    snprintf(d, sizeof d, "%s/v1/cpu,cpuacct", tmp);
    ok = put_file(d, "cpu.cfs_quota_us", "100000\n") && put_file(d, "cpu.cfs_period_us", "100000\n") &&
         put_file(tmp, "self_cgroup", "5:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\n");
    cpus_detect_at(&c, root, self, 2, 2);
    T_CHECK(ok && c.n_cpus == 1 && c.source == CPUS_FROM_CGROUP_V1 && c.quota_cpus == 1.0 &&
                strstr(c.quota_file, "cpu,cpuacct/cpu.cfs_quota_us"),
            "v1 container: %d from %s, quota %g in '%s'", c.n_cpus, cpus_source_name(c.source), c.quota_cpus,
            c.quota_file);
    /* A host process in a v1 child cgroup with its own quota of 3, the root unlimited. */
    snprintf(d, sizeof d, "%s/v1/cpu,cpuacct/docker/abc", tmp);
    ok = put_file(d, "cpu.cfs_quota_us", "300000\n") && put_file(d, "cpu.cfs_period_us", "100000\n");
    snprintf(d, sizeof d, "%s/v1/cpu,cpuacct", tmp);
    ok = ok && put_file(d, "cpu.cfs_quota_us", "-1\n");
    cpus_detect_at(&c, root, self, 16, 16);
    T_CHECK(ok && c.n_cpus == 3 && c.source == CPUS_FROM_CGROUP_V1 && strstr(c.quota_file, "docker/abc/"),
            "v1 child: %d from %s in '%s'", c.n_cpus, cpus_source_name(c.source), c.quota_file);
    /* No cgroup files at all. */
    snprintf(root, sizeof root, "%s/none", tmp);
    cpus_detect_at(&c, root, self, 6, 5);
    T_CHECK(c.n_cpus == 5 && c.source == CPUS_FROM_AFFINITY && c.n_online == 6, "no cgroup: %d from %s", c.n_cpus,
            cpus_source_name(c.source));
    cpus_detect_at(&c, root, self, 0, 0);
    T_CHECK(c.n_cpus == 1, "nothing known: %d", c.n_cpus);
    rm_tree(tmp);
    test_end("cpus: detection on sample cgroup v2/v1 trees (hierarchy, container view, affinity, online)");
}

/* --workers and --threads-per-worker defaults follow the CPU count. */
static void test_config_cpus(void)
{
    test_begin();
    static const struct {
        int n_cpus;
        const char *flags[4];
        int workers, threads;
    } cases[] = {
        {8, {NULL}, 8, 1},
        {1, {NULL}, 1, 1},
        {8, {"--threads-per-worker", "2"}, 4, 2},
        {3, {"--threads-per-worker", "2"}, 1, 2},
        {1, {"--threads-per-worker", "4"}, 1, 4},
        {8, {"--workers", "2"}, 2, 4},
        {8, {"--workers", "3"}, 3, 2},
        {2, {"--workers", "4"}, 4, 1},
        {8, {"--workers", "2", "--threads-per-worker", "1"}, 2, 1},
        {300, {NULL}, 256, 1},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        serve_config cfg;
        config_defaults(&cfg);
        cfg.cpus.n_cpus = cases[i].n_cpus;
        int argc = 0;
        while (argc < 4 && cases[i].flags[argc]) argc++;
        cnn_status st = config_parse(&cfg, argc, (char **)cases[i].flags, err, sizeof err);
        T_CHECK(st == CNN_OK && cfg.n_workers == cases[i].workers && cfg.threads_per_worker == cases[i].threads &&
                    cfg.workers_given == (argc && !strcmp(cases[i].flags[0], "--workers")),
                "case %zu (%d cpus): status %d, workers %d threads %d", i, cases[i].n_cpus, st, cfg.n_workers,
                cfg.threads_per_worker);
    }
    test_end("serve: --workers / --threads-per-worker defaults follow the CPU count");
}

/* The table-driven parser the CLIs use: flags and files mixed, "--", BOOL flags, custom parsers,
 * the environment only with a prefix and never for switches. */
typedef struct {
    char name[8];
    int n, flag;
    int64_t bytes;
    int custom;
} cli_opts;

static cnn_status parse_even(void *opts, const char *value, char *err, size_t err_bytes)
{
    int64_t v;
    if (config_parse_int(value, 0, 100, &v) != CNN_OK || v % 2)
        return cnn_err(err, err_bytes, CNN_ERR_ARG, "expected an even number, got '%s'", value);
    ((cli_opts *)opts)->custom = (int)v;
    return CNN_OK;
}

static void test_flag_table(void)
{
    test_begin();
    static const config_flag flags[] = {
        CONFIG_STR("name", cli_opts, name),        CONFIG_INT("n", cli_opts, n, 1, 9),
        CONFIG_SWITCH("flag", cli_opts, flag),       CONFIG_BYTES("bytes", cli_opts, bytes, 1, 1 << 20),
        CONFIG_CUSTOM("even", parse_even),
    };
    const size_t n_flags = sizeof flags / sizeof flags[0];
    cli_opts o = {.n = 1};
    int pos[16], n_pos = -1;
    char err[256] = "";
    char *argv1[] = {"a.jpg", "--name", "x", "b.jpg", "--flag", "--n=7", "--bytes", "2k", "--even", "4", "--", "--n", "-h"};
    cnn_status st = config_parse_flags(flags, n_flags, &o, NULL, 13, argv1, pos, &n_pos, err, sizeof err);
    T_CHECK(st == CNN_OK, "parse: %s", err);
    T_CHECK(!strcmp(o.name, "x") && o.n == 7 && o.flag == 1 && o.bytes == 2048 && o.custom == 4,
            "values: name '%s' n %d flag %d bytes %lld custom %d", o.name, o.n, o.flag, (long long)o.bytes, o.custom);
    T_CHECK(n_pos == 4 && pos[0] == 0 && pos[1] == 3 && pos[2] == 11 && pos[3] == 12,
            "positional: %d of them, first %d", n_pos, n_pos > 0 ? pos[0] : -1);

    static const struct {
        const char *a, *b, *needle;
    } bad[] = {
        {"--flag=1", NULL, "--flag takes no value"}, {"--n", "10", "--n: expected an integer in 1..9"},
        {"--name", "toolongname", "--name: value longer than 7"}, {"--even", "3", "--even: expected an even number"},
        {"--nope", NULL, "unknown flag '--nope'"},   {"--n", NULL, "--n needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv2[] = {(char *)bad[i].a, (char *)bad[i].b};
        err[0] = '\0';
        st = config_parse_flags(flags, n_flags, &o, NULL, bad[i].b ? 2 : 1, argv2, pos, &n_pos, err, sizeof err);
        T_CHECK(st == CNN_ERR_ARG && strstr(err, bad[i].needle), "%s: status %d, '%s'", bad[i].a, st, err);
    }
    char *argv3[] = {"file.jpg"};
    T_CHECK(config_parse_flags(flags, n_flags, &o, NULL, 1, argv3, NULL, NULL, err, sizeof err) == CNN_ERR_ARG &&
                strstr(err, "unexpected argument 'file.jpg'"), "a positional argument without a list: '%s'", err);

    setenv("TESTCLI_N", "5", 1);
    setenv("TESTCLI_FLAG", "1", 1);
    o = (cli_opts){.n = 1};
    T_CHECK(config_parse_flags(flags, n_flags, &o, NULL, 0, NULL, pos, &n_pos, err, sizeof err) == CNN_OK && o.n == 1,
            "environment read without a prefix: n %d", o.n);
    T_CHECK(config_parse_flags(flags, n_flags, &o, "TESTCLI_", 0, NULL, pos, &n_pos, err, sizeof err) == CNN_OK &&
                o.n == 5 && !o.flag, "with the prefix: n %d, flag %d (switches are not read)", o.n, o.flag);
    unsetenv("TESTCLI_N");
    unsetenv("TESTCLI_FLAG");
    test_end("config_parse_flags: flags and files mixed, --, switch/custom flags, environment prefix");
}

int main(void)
{
    test_media_type();
    test_multipart_ok();
    test_multipart_malformed();
    test_config();
    test_flag_table();
    test_cpu_files();
    test_cpus_detect();
    test_config_cpus();
    return test_finish();
}
