/* eval_metrics_tool: reads a score matrix and prints eval_metrics_json of it (one JSON document), so
 * tests/eval/test_eval_metrics.py can check the metrics module against its own NumPy implementation.
 *   eval_metrics_tool [--logits] [--full] FILE
 * FILE: "N K" on the first line, then N lines "label s_0 ... s_{K-1}". The scores are probabilities,
 * or with --logits logits turned into probabilities and cross-entropies by eval_softmax_row.
 * --full keeps every ROC point (drop_intermediate=False). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/eval_json.h"
#include "../../server/eval_metrics.h"

int main(int argc, char **argv)
{
    int logits = 0, full = 0, a = 1;
    for (; a < argc && !strncmp(argv[a], "--", 2); a++) {
        if (!strcmp(argv[a], "--logits")) logits = 1;
        else if (!strcmp(argv[a], "--full")) full = 1;
        else break;
    }
    if (a + 1 != argc) {
        fprintf(stderr, "usage: eval_metrics_tool [--logits] [--full] FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[a], "r");
    if (!f) {
        perror(argv[a]);
        return 1;
    }
    long long n;
    int k, rc = 1;
    float *score = NULL, *row = NULL;
    int *label = NULL;
    double *nll = NULL;
    if (fscanf(f, "%lld %d", &n, &k) != 2 || n < 1 || k < 1 || n > 100000000 / k) {
        fprintf(stderr, "%s: bad header\n", argv[a]);
        goto out;
    }
    score = malloc((size_t)n * (size_t)k * sizeof *score);
    row = malloc((size_t)k * sizeof *row);
    label = malloc((size_t)n * sizeof *label);
    nll = malloc((size_t)n * sizeof *nll);
    if (!score || !row || !label || !nll) goto out;
    for (long long i = 0; i < n; i++) {
        if (fscanf(f, "%d", &label[i]) != 1) goto bad;
        for (int c = 0; c < k; c++)
            if (fscanf(f, "%f", &row[c]) != 1) goto bad;
        if (logits && (label[i] < 0 || label[i] >= k)) goto bad;
        if (logits) nll[i] = eval_softmax_row(row, k, label[i], score + i * k);
        else memcpy(score + i * k, row, (size_t)k * sizeof *row);
    }
    eval_metrics m;
    char err[256];
    if (eval_metrics_compute(score, label, logits ? nll : NULL, n, k, !full, &m, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    json_t *j = eval_metrics_json(&m, NULL);
    if (j && !json_dumpf(j, stdout, JSON_COMPACT)) rc = 0;
    putchar('\n');
    json_decref(j);
    eval_metrics_free(&m);
    goto out;
bad:
    fprintf(stderr, "%s: bad row\n", argv[a]);
out:
    fclose(f);
    free(score);
    free(row);
    free(label);
    free(nll);
    return rc;
}
