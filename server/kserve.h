/* Open Inference Protocol (KServe v2 REST, kserve/open-inference-protocol inference_rest.md) with
 * Triton's binary tensor data and classification extensions: path parsing, the metadata/health
 * answers and the inference request -> response transformation. No HTTP here: route_kserve.c
 * connects it to the server; kserve_infer runs on an inference worker.
 *
 * A model has two alternative inputs (a request gives exactly one) and one output:
 *   "image"         BYTES [N]         encoded JPEG/PNG/WebP files: base64 strings in JSON "data",
 *                                     or binary data (4-byte little-endian length + bytes each)
 *   "input"         FP32  [N,3,S,S]   preprocessed NCHW tensors (S = the model's input size):
 *                                     JSON "data" flat or nested as the shape, or binary data
 *   "probabilities" FP32  [N,K]       softmax over the K classes; with the output parameter
 *                                     "classification": k (1..min(K, PIPELINE_TOPK_MAX)), BYTES [N,k]
 *                                     "score:index:label" best first */
#ifndef CNN_KSERVE_H
#define CNN_KSERVE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"
#include "zoo.h"

#define KSERVE_MAX_BATCH 64        /* N of one request */
#define KSERVE_MODEL_VERSION "1"   /* the one version of every model */
/* Values a JSON request or answer may hold (parsed, each costs ~40 bytes): FP32 data of 4 x 224 or
 * 2 x 299 images; larger tensors go as binary data. */
#define KSERVE_MAX_JSON_VALUES 655360

typedef enum {
    KSERVE_LIVE = 0,   /* GET /v2/health/live */
    KSERVE_READY,      /* GET /v2/health/ready */
    KSERVE_SERVER,     /* GET /v2 */
    KSERVE_MODEL,      /* GET /v2/models/{name}[/versions/{v}] */
    KSERVE_MODEL_READY,/* GET /v2/models/{name}[/versions/{v}]/ready */
    KSERVE_INFER,      /* POST /v2/models/{name}[/versions/{v}]/infer */
} kserve_kind;

typedef struct {
    kserve_kind kind;
    char model[72];   /* KSERVE_MODEL, _MODEL_READY, _INFER */
    char version[32]; /* "" when the path names none */
} kserve_path;

/* 1 when url is one of the routes above (fills p), 0 otherwise (also for names too long to be a
 * model's). */
int kserve_parse_path(const char *url, kserve_path *p);

/* Zoo entry of a loaded model for p's name and version; -1 with a message for an unknown or not
 * loaded model or an unknown version (the caller answers 404). */
int kserve_find_model(const zoo *z, const kserve_path *p, char *err, size_t err_bytes);

/* {"error": message} (the protocol's error object). */
json_t *kserve_error_json(const char *message);
/* GET /v2: name, version, extensions. */
json_t *kserve_server_metadata_json(void);
/* GET /v2/models/{name}: name, versions, platform, inputs, outputs (entry must be loaded). */
json_t *kserve_model_metadata_json(const zoo *z, int entry);

/* The answer of one inference request. */
typedef struct {
    int status;            /* HTTP status */
    char *body;            /* malloc'd (NULL only when out of memory): the JSON, then any binary outputs */
    size_t n_body;
    size_t n_json;         /* bytes of JSON at the start; < n_body when outputs are binary (the caller
                            * sends Inference-Header-Content-Length: n_json) */
    const char *error_code;/* short code for logs when status != 200 */
    int n_items;           /* N */
    double decode_ms, preprocess_ms, inference_ms, postprocess_ms; /* sums over the N items */
} kserve_answer;

/* Parses the request body (the JSON object is its first n_header bytes when the client sent
 * Inference-Header-Content-Length, n_header = -1 otherwise; the binary tensor data follows), runs
 * model `entry` on every item with ws and builds the response. max_pixels: the decode pixel cap.
 * Every failure is an answer with status 400 (malformed request), 413 (over KSERVE_MAX_JSON_VALUES),
 * 415/422 (undecodable image), 503 (out of memory); never exits. */
void kserve_infer(pipeline_ws *ws, const zoo *z, int entry, const uint8_t *body, size_t n_body, int64_t n_header,
                  int64_t max_pixels, kserve_answer *out);

#endif
