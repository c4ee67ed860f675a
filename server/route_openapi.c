/* GET /openapi.yaml: the API description embedded in the binary (openapi.c). */
#include "routes.h"

#include "openapi.h"

enum MHD_Result openapi_answer(http_req *r)
{
    size_t n;
    const char *text = openapi_yaml(&n);
    return http_send_static(r, MHD_HTTP_OK, text, n, "application/yaml");
}
