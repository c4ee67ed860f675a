#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void log_init(logger *lg, log_format format) { lg->format = format; }

static const char *level_name(log_level level)
{
    switch (level) {
    case LOG_LEVEL_INFO: return "info";
    case LOG_LEVEL_WARN: return "warn";
    case LOG_LEVEL_ERROR: return "error";
    }
    return "info";
}

/* UTC wall-clock time with milliseconds, e.g. 2024-05-01T12:00:00.123Z. */
static void format_timestamp(char *buf, size_t buf_bytes)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, buf_bytes, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, buf_bytes - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* A string can be written bare in text format when it has no spaces, quotes or '='. */
static int is_bare(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == '"' || *s == '=' || (unsigned char)*s >= 0x7f) return 0;
    return 1;
}

static void write_text_value(FILE *f, json_t *v)
{
    if (json_is_string(v) && is_bare(json_string_value(v))) {
        fputs(json_string_value(v), f);
    } else if (json_is_real(v)) {
        fprintf(f, "%.3f", json_real_value(v));
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
        fputs(s ? s : "?", f);
        free(s);
    }
}

void log_event(const logger *lg, log_level level, const char *event, json_t *fields)
{
    char ts[40];
    format_timestamp(ts, sizeof ts);
    /* Build the whole line in memory first so it reaches stderr in one write. */
    char *line = NULL;
    size_t line_bytes = 0;
    FILE *f = open_memstream(&line, &line_bytes);
    if (!f) {
        json_decref(fields);
        return;
    }
    if (lg->format == LOG_FORMAT_JSON) {
        json_t *obj = json_pack("{s:s,s:s,s:s}", "ts", ts, "level", level_name(level), "event", event);
        if (obj && fields) json_object_update(obj, fields);
        char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        fputs(s ? s : "{}", f);
        free(s);
        json_decref(obj);
    } else {
        fprintf(f, "%s %-5s %s", ts, level_name(level), event);
        const char *key;
        json_t *v;
        if (fields) json_object_foreach(fields, key, v) {
            fprintf(f, " %s=", key);
            write_text_value(f, v);
        }
    }
    fputc('\n', f);
    fclose(f);
    fwrite(line, 1, line_bytes, stderr);
    free(line);
    json_decref(fields);
}

void log_msgf(const logger *lg, log_level level, const char *event, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_event(lg, level, event, json_pack("{s:s}", "msg", msg));
}
