#include "web_assets.h"

#include <string.h>

/* The assembler includes each file verbatim (the Makefile makes this object depend on them, and
 * make runs from the repository root where the paths resolve). */
#define WEB_INCBIN(sym, file)                                                                          \
    __asm__(".section .rodata\n"                                                                       \
            ".balign 8\n"                                                                              \
            ".globl " #sym "_start\n" #sym "_start:\n"                                                 \
            ".incbin \"" file "\"\n"                                                                   \
            ".globl " #sym "_end\n" #sym "_end:\n"                                                     \
            ".byte 0\n"                                                                                \
            ".text\n");                                                                                \
    extern const char sym##_start[], sym##_end[];

WEB_INCBIN(cnnserve_web_index, "server/web/index.html")
WEB_INCBIN(cnnserve_web_js, "server/web/app.js")
WEB_INCBIN(cnnserve_web_css, "server/web/app.css")

int web_asset_find(const char *url_path, web_asset *out)
{
    const struct {
        const char *path, *content_type, *start, *end;
    } assets[] = {
        {"/", "text/html; charset=utf-8", cnnserve_web_index_start, cnnserve_web_index_end},
        {"/app.js", "text/javascript; charset=utf-8", cnnserve_web_js_start, cnnserve_web_js_end},
        {"/app.css", "text/css; charset=utf-8", cnnserve_web_css_start, cnnserve_web_css_end},
    };
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
        if (!strcmp(url_path, assets[i].path)) {
            out->path = assets[i].path;
            out->content_type = assets[i].content_type;
            out->data = assets[i].start;
            out->n_bytes = (size_t)(assets[i].end - assets[i].start);
            return 1;
        }
    return 0;
}
