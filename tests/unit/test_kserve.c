/* Unit tests of the Open Inference Protocol code: the strict base64 decoder, /v2 path parsing, and
 * kserve_infer on the real mobilenet_v3_small of ../shared/weights (request errors, JSON flat/nested
 * and binary inputs giving the same bits, classification strings) — skipped when it is missing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/base64.h"
#include "../../server/kserve.h"
#include "../test.h"

static size_t encode64(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static void test_base64(void)
{
    test_begin();
    static const struct {
        const char *enc, *dec;
    } good[] = {{"", ""}, {"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9v", "foo"}, {"Zm9vYg==", "foob"},
                {"Zm9vYmE=", "fooba"}, {"Zm9vYmFy", "foobar"}};
    uint8_t out[64];
    size_t n;
    char err[160];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cnn_status st = base64_decode(good[i].enc, strlen(good[i].enc), out, sizeof out, &n, err, sizeof err);
        T_CHECK(st == CNN_OK && n == strlen(good[i].dec) && !memcmp(out, good[i].dec, n), "'%s': %s", good[i].enc,
                st == CNN_OK ? "wrong bytes" : err);
    }
    static const char *const bad[] = {"Zg=",  "Zg=a", "Z===", "Zh==", "Zm9=", "Zm9v\n", "Zm9v YmFy",
                                      "=Zg=", "Zg==Zg==", "Zm8-", "Zm8_", "Zm\"v", "===="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cnn_status st = base64_decode(bad[i], strlen(bad[i]), out, sizeof out, &n, err, sizeof err);
        T_CHECK(st == CNN_ERR_ARG && strstr(err, "base64"), "'%s' accepted", bad[i]);
    }
    /* every byte value at every position mod 3, through a reference encoder */
    uint8_t all[258], back[258];
    char enc[400];
    for (int i = 0; i < 258; i++) all[i] = (uint8_t)(i * 7 + 3);
    for (size_t len = 255; len <= 258; len++) {
        size_t n_enc = encode64(all, len, enc);
        cnn_status st = base64_decode(enc, n_enc, back, sizeof back, &n, err, sizeof err);
        T_CHECK(st == CNN_OK && n == len && !memcmp(all, back, len), "round trip of %zu bytes", len);
    }
    T_CHECK(base64_decode("Zm9vYmFy", 8, out, 5, &n, err, sizeof err) == CNN_ERR_ARG, "small output buffer accepted");
    test_end("base64_strict_decode");
}

static void test_paths(void)
{
    test_begin();
    static const struct {
        const char *url;
        int ok;
        kserve_kind kind;
        const char *model, *version;
    } cases[] = {
        {"/v2", 1, KSERVE_SERVER, "", ""},
        {"/v2/", 1, KSERVE_SERVER, "", ""},
        {"/v2/health/live", 1, KSERVE_LIVE, "", ""},
        {"/v2/health/ready", 1, KSERVE_READY, "", ""},
        {"/v2/models/m", 1, KSERVE_MODEL, "m", ""},
        {"/v2/models/m/ready", 1, KSERVE_MODEL_READY, "m", ""},
        {"/v2/models/m/infer", 1, KSERVE_INFER, "m", ""},
        {"/v2/models/m/versions/1", 1, KSERVE_MODEL, "m", "1"},
        {"/v2/models/m/versions/1/ready", 1, KSERVE_MODEL_READY, "m", "1"},
        {"/v2/models/m/versions/7/infer", 1, KSERVE_INFER, "m", "7"},
        {"/v2/models/versions/infer", 1, KSERVE_INFER, "versions", ""},
        {"/v2/models/", 0, KSERVE_SERVER, "", ""},
        {"/v2/models", 0, KSERVE_SERVER, "", ""},
        {"/v2/models/m/", 0, KSERVE_SERVER, "", ""},
        {"/v2/models//infer", 0, KSERVE_SERVER, "", ""},
        {"/v2/models/m/predict", 0, KSERVE_SERVER, "", ""},
        {"/v2/models/m/versions/1/infer/x", 0, KSERVE_SERVER, "", ""},
        {"/v2/models/m/versions//infer", 0, KSERVE_SERVER, "", ""},
        {"/v2/models/m/versions", 0, KSERVE_SERVER, "", ""},
        {"/v2/health", 0, KSERVE_SERVER, "", ""},
        {"/v2/health/live/", 0, KSERVE_SERVER, "", ""},
        {"/v1/models/m", 0, KSERVE_SERVER, "", ""},
        {"/v2x", 0, KSERVE_SERVER, "", ""},
        {"/v2/models/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0,
         KSERVE_SERVER, "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kserve_path p;
        int ok = kserve_parse_path(cases[i].url, &p);
        T_CHECK(ok == cases[i].ok, "%s: match %d, want %d", cases[i].url, ok, cases[i].ok);
        if (ok && cases[i].ok)
            T_CHECK(p.kind == cases[i].kind && !strcmp(p.model, cases[i].model) &&
                        !strcmp(p.version, cases[i].version),
                    "%s: kind %d model '%s' version '%s'", cases[i].url, (int)p.kind, p.model, p.version);
    }
    test_end("v2_path_parsing");
}

/* ---------------------------------------------------------------- inference on the real model */

typedef struct {
    zoo *z;
    pipeline_ws *ws;
    int entry;
    int s;
} fixture;

static json_t *infer(fixture *f, const char *json, const uint8_t *bin, size_t n_bin, kserve_answer *a)
{
    size_t n_json = strlen(json);
    uint8_t *body = malloc(n_json + n_bin + 1);
    memcpy(body, json, n_json);
    if (n_bin) memcpy(body + n_json, bin, n_bin);
    kserve_infer(f->ws, f->z, f->entry, body, n_json + n_bin, n_bin ? (int64_t)n_json : -1, 0, a);
    free(body);
    return a->body ? json_loadb(a->body, a->n_json, 0, NULL) : NULL;
}

static void expect_error(fixture *f, const char *name, const char *json, const uint8_t *bin, size_t n_bin,
                         int status, const char *needle)
{
    test_begin();
    kserve_answer a;
    json_t *o = infer(f, json, bin, n_bin, &a);
    const char *msg = json_string_value(json_object_get(o, "error"));
    T_CHECK(a.status == status, "status %d, want %d (%s)", a.status, status, a.body ? a.body : "no body");
    T_CHECK(msg && json_object_size(o) == 1, "not an {\"error\": ...} object: %s", a.body ? a.body : "no body");
    T_CHECK(msg && strstr(msg, needle), "message '%s' lacks '%s'", msg ? msg : "", needle);
    json_decref(o);
    free(a.body);
    char full[96];
    snprintf(full, sizeof full, "infer_error_%s", name);
    test_end(full);
}

static void test_errors(fixture *f)
{
    expect_error(f, "not_json", "{\"inputs\": [", NULL, 0, 400, "not valid JSON");
    expect_error(f, "not_object", "[1]", NULL, 0, 400, "JSON object");
    expect_error(f, "no_inputs", "{}", NULL, 0, 400, "exactly one input");
    expect_error(f, "two_inputs",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"\"]},"
                 "{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"\"]}]}",
                 NULL, 0, 400, "exactly one input");
    expect_error(f, "unknown_input", "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
                 NULL, 0, 400, "unknown input 'x'");
    expect_error(f, "wrong_datatype",
                 "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP64\",\"shape\":[1,3,224,224],\"data\":[1]}]}", NULL,
                 0, 400, "datatype FP32");
    expect_error(f, "image_as_fp32", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
                 NULL, 0, 400, "datatype BYTES");
    expect_error(f, "wrong_shape",
                 "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,3,225,224],\"data\":[1]}]}", NULL,
                 0, 400, "[N,3,224,224]");
    expect_error(f, "negative_dim",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[-1],\"data\":[\"\"]}]}", NULL, 0,
                 400, "shape [N]");
    expect_error(f, "batch_zero", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[0],\"data\":[]}]}",
                 NULL, 0, 400, "batch size 0");
    expect_error(f, "batch_too_big",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[65],\"data\":[]}]}", NULL, 0, 400,
                 "out of range 1..64");
    expect_error(f, "count_mismatch",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[2],\"data\":[\"Zm9v\"]}]}", NULL, 0,
                 400, "flat array of 2");
    expect_error(f, "fp32_count_mismatch",
                 "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,3,224,224],\"data\":[1,2]}]}",
                 NULL, 0, 400, "flat array of 150528");
    expect_error(f, "bad_base64",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"no*base64\"]}]}",
                 NULL, 0, 400, "base64");
    expect_error(f, "bytes_not_string",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[5]}]}", NULL, 0, 400,
                 "not a base64 string");
    expect_error(f, "not_an_image",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"Zm9vYmFy\"]}]}",
                 NULL, 0, 415, "element 0");
    expect_error(f, "no_data", "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1]}]}", NULL, 0, 400,
                 "no \"data\"");
    expect_error(f, "id_not_string",
                 "{\"id\":5,\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"\"]}]}",
                 NULL, 0, 400, "\"id\" must be a string");
    expect_error(f, "unknown_output",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"Zm9v\"]}],"
                 "\"outputs\":[{\"name\":\"logits\"}]}",
                 NULL, 0, 400, "unknown output 'logits'");
    expect_error(f, "classification_zero",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"Zm9v\"]}],"
                 "\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"classification\":0}}]}",
                 NULL, 0, 400, "1..1000");
    /* FP32 JSON of 5 x 3 x 224 x 224 values: over KSERVE_MAX_JSON_VALUES before any parsing */
    size_t n_big = (size_t)5 * 3 * 224 * 224;
    char *big = malloc(n_big * 2 + 256);
    size_t o = (size_t)sprintf(big, "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[5,3,224,224],"
                                    "\"data\":[");
    for (size_t i = 0; i < n_big; i++) o += (size_t)sprintf(big + o, i ? ",0" : "0");
    sprintf(big + o, "]}]}");
    expect_error(f, "json_too_many_values", big, NULL, 0, 413, "binary data");
    free(big);
    /* binary FP32 with a NaN */
    size_t n_nan = (size_t)3 * 224 * 224;
    float *nan_in = calloc(n_nan, sizeof(float));
    nan_in[777] = NAN;
    char nan_hdr[256];
    snprintf(nan_hdr, sizeof nan_hdr,
             "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,3,224,224],"
             "\"parameters\":{\"binary_data_size\":%zu}}]}",
             n_nan * sizeof(float));
    expect_error(f, "binary_fp32_nan", nan_hdr, (const uint8_t *)nan_in, n_nan * sizeof(float), 400, "element 777");
    free(nan_in);
    static const uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    expect_error(f, "binary_size_mismatch",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],"
                 "\"parameters\":{\"binary_data_size\":7}}]}",
                 junk, sizeof junk, 400, "binary_data_size is 7");
    expect_error(f, "binary_element_too_long",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],"
                 "\"parameters\":{\"binary_data_size\":8}}]}",
                 junk, sizeof junk, 400, "declares");
    expect_error(f, "binary_without_size",
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"Zm9v\"]}]}", junk,
                 sizeof junk, 400, "no input has binary_data_size");
    expect_error(f, "binary_fp32_size",
                 "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,3,224,224],"
                 "\"parameters\":{\"binary_data_size\":8}}]}",
                 junk, sizeof junk, 400, "needs 602112");
}

/* A deterministic input pattern in [-2, 2). */
static float pattern(size_t i) { return (float)((int)((i * 2654435761u) >> 20 & 1023) - 512) / 256.0f; }

/* A request with FP32 data of n_elems elements (N = n_elems / 3SS): one flat array, or arrays nested
 * as the shape [N,3,S,S]. */
static char *fp32_json(size_t n_elems, int nested, int s, const char *outputs)
{
    size_t cap = n_elems * 24 + 1024, o = 0;
    char *j = malloc(cap);
    size_t blk[4] = {n_elems, (size_t)(3 * s * s), (size_t)(s * s), (size_t)s};
    o += (size_t)snprintf(j + o, cap - o,
                          "{\"id\":\"req-7\",\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                          "\"shape\":[%zu,3,%d,%d],\"data\":",
                          n_elems / blk[1], s, s);
    for (size_t i = 0; i < n_elems; i++) {
        for (int d = 0; d < (nested ? 4 : 1); d++)
            if (i % blk[d] == 0) j[o++] = '[';
        o += (size_t)snprintf(j + o, cap - o, "%.9g", (double)pattern(i));
        for (int d = nested ? 3 : 0; d >= 0; d--)
            if ((i + 1) % blk[d] == 0) j[o++] = ']';
        if (i + 1 < n_elems) j[o++] = ',';
    }
    o += (size_t)snprintf(j + o, cap - o, "}]%s}", outputs);
    return j;
}

static void test_fp32(fixture *f)
{
    test_begin();
    int s = f->s;
    size_t per = (size_t)3 * (size_t)s * (size_t)s, n = 2 * per;
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = pattern(i);
    /* reference: pipeline_run_input + model_topk directly */
    const model *m = f->z->entries[f->entry].m;
    float ref[2][1000], sorted[1000];
    int idx[1000];
    for (int b = 0; b < 2; b++) {
        const float *logits = pipeline_run_input(f->ws, 0, x + (size_t)b * per);
        model_topk(m, logits, 1000, idx, sorted);
        for (int k = 0; k < 1000; k++) ref[b][idx[k]] = sorted[k];
    }
    char *flat = fp32_json(n, 0, s, "");
    kserve_answer a;
    json_t *o = infer(f, flat, NULL, 0, &a);
    T_CHECK(a.status == 200, "flat: status %d %.300s", a.status, a.body ? a.body : "");
    json_t *out = json_array_get(json_object_get(o, "outputs"), 0);
    json_t *data = json_object_get(out, "data");
    T_CHECK(!strcmp(json_string_value(json_object_get(o, "id")) ? json_string_value(json_object_get(o, "id")) : "",
                    "req-7"),
            "id not echoed");
    T_CHECK(json_array_size(data) == 2000 && json_integer_value(json_array_get(json_object_get(out, "shape"), 0)) == 2 &&
                json_integer_value(json_array_get(json_object_get(out, "shape"), 1)) == 1000 &&
                !strcmp(json_string_value(json_object_get(out, "datatype")), "FP32"),
            "output shape/datatype/data size wrong");
    for (size_t i = 0; i < json_array_size(data) && i < 2000; i++)
        if ((float)json_real_value(json_array_get(data, i)) != ref[i / 1000][i % 1000]) {
            T_CHECK(0, "flat JSON probability %zu differs: %.9g vs %.9g", i, json_real_value(json_array_get(data, i)),
                    (double)ref[i / 1000][i % 1000]);
            break;
        }
    json_decref(o);
    free(a.body);
    free(flat);

    /* binary FP32 in, binary FP32 out: the same bits */
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[2,3,%d,%d],\"parameters\":"
             "{\"binary_data_size\":%zu}}],\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":"
             "true}}]}",
             s, s, n * sizeof(float));
    o = infer(f, hdr, (const uint8_t *)x, n * sizeof(float), &a);
    out = json_array_get(json_object_get(o, "outputs"), 0);
    T_CHECK(a.status == 200 && a.n_body == a.n_json + 2000 * sizeof(float) &&
                json_integer_value(json_object_get(json_object_get(out, "parameters"), "binary_data_size")) == 8000 &&
                !json_object_get(out, "data"),
            "binary: status %d, %zu+%zu bytes", a.status, a.n_json, a.n_body - a.n_json);
    if (a.status == 200 && a.n_body == a.n_json + 8000)
        T_CHECK(!memcmp(a.body + a.n_json, ref, 8000), "binary output differs from the reference");
    json_decref(o);
    free(a.body);

    /* nested JSON of one item, with top-3 classification */
    char *nested = fp32_json(per, 1, s, ",\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"classification\":3}}]");
    o = infer(f, nested, NULL, 0, &a);
    out = json_array_get(json_object_get(o, "outputs"), 0);
    data = json_object_get(out, "data");
    T_CHECK(a.status == 200 && json_array_size(data) == 3 && !strcmp(json_string_value(json_object_get(out, "datatype")), "BYTES"),
            "nested+classification: status %d %.300s", a.status, a.body ? a.body : "");
    float prev = 2;
    for (size_t k = 0; k < json_array_size(data); k++) {
        const char *str = json_string_value(json_array_get(data, k));
        double score = 0;
        int index = -1, used = 0;
        T_CHECK(str && sscanf(str, "%lf:%d:%n", &score, &index, &used) == 2 && used > 0, "bad string %s", str);
        if (index < 0 || index >= 1000) break;
        T_CHECK((float)score == ref[0][index] && (float)score <= prev, "%s: score vs probability %.9g", str,
                (double)ref[0][index]);
        T_CHECK(!strcmp(str + used, model_label(index)), "%s: label should be %s", str, model_label(index));
        prev = (float)score;
    }
    json_decref(o);
    free(a.body);
    free(nested);
    free(x);
    test_end("infer_fp32_flat_nested_binary_same_bits");
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len);
    if (b && fread(b, 1, (size_t)len, fp) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = (size_t)len;
    return b;
}

static void test_image(fixture *f, const char *shared)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/data/imagenet-sample/n01443537_goldfish.JPEG", shared);
    size_t n;
    uint8_t *jpg = read_file(path, &n);
    if (!jpg) {
        test_skip("infer_image_base64_equals_binary", "no ../shared/data/imagenet-sample photo");
        return;
    }
    test_begin();
    char *b64 = malloc(n * 2 + 16);
    encode64(jpg, n, b64);
    size_t cap = 2 * strlen(b64) + 512;
    char *json = malloc(cap);
    snprintf(json, cap,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[2],\"data\":[\"%s\",\"%s\"]}],"
             "\"outputs\":[{\"name\":\"probabilities\",\"parameters\":{\"classification\":5}}]}",
             b64, b64);
    kserve_answer a1, a2;
    json_t *o1 = infer(f, json, NULL, 0, &a1);
    T_CHECK(a1.status == 200 && a1.n_items == 2, "base64: status %d %.300s", a1.status, a1.body ? a1.body : "");
    /* the same two images as binary BYTES elements */
    uint8_t *bin = malloc(2 * (n + 4));
    uint32_t len = (uint32_t)n;
    for (int i = 0; i < 2; i++) {
        memcpy(bin + i * (n + 4), &len, 4);
        memcpy(bin + i * (n + 4) + 4, jpg, n);
    }
    snprintf(json, cap,
             "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"BYTES\",\"shape\":[2],\"parameters\":"
             "{\"binary_data_size\":%zu}}],\"outputs\":[{\"name\":\"probabilities\",\"parameters\":"
             "{\"classification\":5}}]}",
             2 * (n + 4));
    json_t *o2 = infer(f, json, bin, 2 * (n + 4), &a2);
    T_CHECK(a2.status == 200, "binary: status %d %.300s", a2.status, a2.body ? a2.body : "");
    json_t *d1 = json_object_get(json_array_get(json_object_get(o1, "outputs"), 0), "data");
    json_t *d2 = json_object_get(json_array_get(json_object_get(o2, "outputs"), 0), "data");
    T_CHECK(json_array_size(d1) == 10 && json_equal(d1, d2), "base64 and binary answers differ");
    const char *top = json_string_value(json_array_get(d1, 0));
    T_CHECK(top && strstr(top, ":1:goldfish"), "top-1 of the goldfish photo: %s", top ? top : "none");
    json_decref(o1);
    json_decref(o2);
    free(a1.body);
    free(a2.body);
    free(bin);
    free(json);
    free(b64);
    free(jpg);
    test_end("infer_image_base64_equals_binary");
}

int main(void)
{
    test_base64();
    test_paths();
    const char *shared = getenv("CNN_SHARED") ? getenv("CNN_SHARED") : "../shared";
    char wdir[1100];
    snprintf(wdir, sizeof wdir, "%s/weights", shared);
    fixture f = {0};
    logger lg;
    log_init(&lg, LOG_FORMAT_TEXT);
    char err[600];
    if (zoo_load(&f.z, wdir, "mobilenet_v3_small", &lg, err, sizeof err) != CNN_OK) {
        test_skip("infer", "no mobilenet_v3_small in ../shared/weights");
        return test_finish();
    }
    f.entry = f.z->loaded[0];
    const model *m = f.z->entries[f.entry].m;
    f.s = model_input_size(m);
    if (pipeline_ws_init(&f.ws, &m, 1, err, sizeof err) != CNN_OK) {
        printf("not ok - infer: %s\n", err);
        return 1;
    }
    test_errors(&f);
    test_fp32(&f);
    test_image(&f, shared);
    pipeline_ws_free(f.ws);
    zoo_release(f.z);
    return test_finish();
}
