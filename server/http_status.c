/* The API's HTTP status and error code for a failed classification (http.h). Apart from http.c so
 * that the CLIs' JSON error lines and the KServe routes can use it without the HTTP server. */
#include <microhttpd.h>

#include "http.h"

void http_error_of_status(cnn_status st, int *status, const char **code)
{
    switch (st) {
    case CNN_ERR_UNSUPPORTED: *status = MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, *code = "unsupported_media_type"; return;
    case CNN_ERR_DECODE: *status = MHD_HTTP_UNPROCESSABLE_CONTENT, *code = "undecodable_image"; return;
    case CNN_ERR_TOO_LARGE: *status = MHD_HTTP_UNPROCESSABLE_CONTENT, *code = "image_too_large"; return;
    case CNN_ERR_NOMEM: *status = MHD_HTTP_SERVICE_UNAVAILABLE, *code = "busy"; return;
    case CNN_ERR_ARG: *status = MHD_HTTP_BAD_REQUEST, *code = "bad_parameter"; return;
    default: *status = MHD_HTTP_INTERNAL_SERVER_ERROR, *code = "internal"; return;
    }
}
