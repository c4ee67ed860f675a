/* openapi.yaml, embedded in the binary at build time and served at GET /openapi.yaml. */
#ifndef CNN_OPENAPI_H
#define CNN_OPENAPI_H

#include <stddef.h>

const char *openapi_yaml(size_t *n_bytes);

#endif
