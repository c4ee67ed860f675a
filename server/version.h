/* Version of the cnnserve binary, reported by --version, GET /v1/models and the build_info metric. */
#ifndef CNN_VERSION_H
#define CNN_VERSION_H

#define CNNSERVE_VERSION "0.1.0"

#endif
