/* Read-only access to the --reports-dir tree (eval JSON, REPORT.md, figures) for the web page:
 * a listing and a safe open that never leaves the directory. No HTTP here. */
#ifndef CNN_REPORTS_H
#define CNN_REPORTS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/stat.h>

#include "../core/status.h"

#define REPORTS_MAX_FILES 500 /* listed at most (the listing says when it stopped) */
#define REPORTS_MAX_DEPTH 4   /* sub-directory levels below the reports directory */
#define REPORTS_MAX_PATH 512  /* bytes of a relative path */

/* Content-Type served for a report file, by extension (.md .txt .csv .tsv .log .json .png .svg .jpg
 * .jpeg); NULL for any other file, which is neither listed nor served. */
const char *reports_content_type(const char *rel_path);

/* {"configured": bool, "files": [{"path", "bytes", "modified", "type"}...], "truncated": bool}:
 * the servable regular files under dir (relative paths, sorted; hidden names and anything that
 * resolves outside dir skipped; at most REPORTS_MAX_FILES). dir "" = no reports directory
 * configured. NULL only when out of memory. */
json_t *reports_list_json(const char *dir);

/* Opens rel_path (a URL path below /reports/, already percent-decoded) under dir for reading.
 * Rejected: empty, absolute or over-long paths, empty, "." or ".." segments, hidden (dot) names,
 * control characters or backslashes, types reports_content_type does not serve, non-regular files,
 * and anything whose real path (symlinks resolved) lies outside dir. On success *fd is open
 * (O_RDONLY, the caller closes it) and *st describes it. CNN_ERR_ARG for a rejected path,
 * CNN_ERR_MISSING when no such servable file exists, CNN_ERR_IO otherwise. */
cnn_status reports_open(const char *dir, const char *rel_path, int *fd, struct stat *st, char *err, size_t err_bytes);

#endif
