#include "openapi.h"

/* The assembler includes the file verbatim (the Makefile makes this object depend on openapi.yaml,
 * and make runs from the repository root where the path resolves); a NUL follows so the text is
 * also a C string. */
__asm__(".section .rodata\n"
        ".balign 8\n"
        ".globl cnnserve_openapi_size\n"
        "cnnserve_openapi_size:\n"
        ".quad cnnserve_openapi_end - cnnserve_openapi_text\n"
        ".globl cnnserve_openapi_text\n"
        "cnnserve_openapi_text:\n"
        ".incbin \"openapi.yaml\"\n"
        "cnnserve_openapi_end:\n"
        ".byte 0\n"
        ".text\n");

extern const char cnnserve_openapi_text[];
extern const unsigned long long cnnserve_openapi_size;

const char *openapi_yaml(size_t *n_bytes)
{
    *n_bytes = (size_t)cnnserve_openapi_size;
    return cnnserve_openapi_text;
}
