/* The PyTorch reference cases of $CNN_CACHE/ref/manifest.json (written by tests/ref/gen_reference.py,
 * its CASES) for the C tests that compare against them. Without the manifest (no PyTorch) a test
 * skips each check it would have run, one skip line per case, by the same name. */
#ifndef CNN_TEST_REF_H
#define CNN_TEST_REF_H

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "test.h"

static const char *const test_ref_cases[] = {
    "mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2_x1_0", "alexnet", "inception_v3",
    "mobilenet_v3_small_tf_same", "shufflenet_v2_x1_0_f16", "mobilenet_v3_large_bf16",
};
#define TEST_N_REF_CASES ((int)(sizeof test_ref_cases / sizeof test_ref_cases[0]))

/* Loads cache_dir/ref/manifest.json into *man (the caller json_decref()s it) and fills found[i] with
 * the entry of test_ref_cases[i]. Returns 0 when there is no manifest (found[] all NULL); otherwise
 * runs the case "reference manifest lists exactly the expected cases" (fails on a missing or an
 * unknown entry, so this list and the generator stay in step) and returns 1. */
static inline int test_ref_manifest(const char *cache_dir, json_t **man, json_t *found[TEST_N_REF_CASES])
{
    char path[2048];
    snprintf(path, sizeof path, "%s/ref/manifest.json", cache_dir);
    json_error_t jerr;
    *man = json_load_file(path, 0, &jerr);
    json_t *cases = *man ? json_object_get(*man, "cases") : NULL;
    for (int i = 0; i < TEST_N_REF_CASES; i++) found[i] = NULL;
    if (!json_is_array(cases)) return 0;
    test_begin();
    size_t j;
    json_t *c;
    json_array_foreach(cases, j, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        int i = 0;
        while (i < TEST_N_REF_CASES && (!name || strcmp(name, test_ref_cases[i]))) i++;
        T_CHECK(i < TEST_N_REF_CASES, "manifest case %s is not in tests/test_ref.h", name ? name : "(no name)");
        if (i < TEST_N_REF_CASES) found[i] = c;
    }
    for (int i = 0; i < TEST_N_REF_CASES; i++)
        T_CHECK(found[i] != NULL, "manifest lacks case %s (rerun make ref)", test_ref_cases[i]);
    test_end("reference manifest lists exactly the expected cases");
    return 1;
}

#endif
