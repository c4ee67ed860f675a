/* Structured log lines on stderr, as "key=value" text or one JSON object per line.
 * A logger is immutable after log_init, so every thread may use it; each line is written with a
 * single stdio call, so lines from different threads never interleave. */
#ifndef CNN_LOG_H
#define CNN_LOG_H

#include <jansson.h>

typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } log_format;
typedef enum { LOG_LEVEL_INFO = 0, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level;

typedef struct {
    log_format format;
} logger;

void log_init(logger *lg, log_format format);

/* Writes one line: timestamp, level, event name, then the fields of `fields` in insertion order.
 * Steals the reference to fields (may be NULL). */
void log_event(const logger *lg, log_level level, const char *event, json_t *fields);

/* Shorthand for an event with a single "msg" field. */
void log_msgf(const logger *lg, log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
