#include "eval_json.h"

#include <math.h>

json_t *eval_real_json(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *reals_json(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, eval_real_json(v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *roc_json(const eval_roc *r)
{
    json_t *o = json_pack("{s:o,s:I,s:I}", "auc", eval_real_json(r->auc), "n_pos", (json_int_t)r->n_pos, "n_neg",
                          (json_int_t)r->n_neg);
    if (!o) return NULL;
    int bad = json_object_set_new(o, "fpr", reals_json(r->fpr, r->n_points)) ||
              json_object_set_new(o, "tpr", reals_json(r->tpr, r->n_points));
    if (!bad && r->threshold) bad = json_object_set_new(o, "thresholds", reals_json(r->threshold, r->n_points));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *avg_json(double p, double r, double f1)
{
    return json_pack("{s:o,s:o,s:o}", "precision", eval_real_json(p), "recall", eval_real_json(r), "f1",
                     eval_real_json(f1));
}

json_t *eval_metrics_json(const eval_metrics *m, const char *const *labels)
{
    int k = m->n_classes;
    json_t *per_class = json_array(), *confusion = json_array(), *curves = json_array();
    json_t *o = NULL;
    if (!per_class || !confusion || !curves) goto fail;
    for (int c = 0; c < k; c++) {
        json_t *e = json_pack("{s:i,s:o,s:o,s:o,s:I,s:I}", "class", c, "precision", eval_real_json(m->precision[c]),
                              "recall", eval_real_json(m->recall[c]), "f1", eval_real_json(m->f1[c]), "support",
                              (json_int_t)m->support[c], "predicted", (json_int_t)m->n_predicted[c]);
        if (e && labels) json_object_set_new(e, "label", json_string(labels[c]));
        if (json_array_append_new(per_class, e)) goto fail;
        json_t *row = json_array();
        for (int j = 0; row && j < k; j++)
            if (json_array_append_new(row, json_integer((json_int_t)m->confusion[(int64_t)c * k + j]))) {
                json_decref(row);
                row = NULL;
            }
        if (json_array_append_new(confusion, row)) goto fail;
        json_t *r = roc_json(&m->roc[c]);
        if (r) json_object_set_new(r, "class", json_integer(c));
        if (r && labels) json_object_set_new(r, "label", json_string(labels[c]));
        if (json_array_append_new(curves, r)) goto fail;
    }
    json_t *macro = roc_json(&m->macro);
    if (macro) {
        json_object_del(macro, "n_pos");
        json_object_del(macro, "n_neg");
        json_object_set_new(macro, "n_classes", json_integer(m->n_auc_classes));
    }
    o = json_pack("{s:I,s:i,s:o,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:{s:o,s:o,s:o}}", "images", (json_int_t)m->n_samples,
                  "num_classes", k, "top1", eval_real_json(m->top1), "top_k", m->top_k, "top5",
                  eval_real_json(m->topk), "cross_entropy", eval_real_json(m->mean_nll), "per_class", per_class,
                  "macro_avg", avg_json(m->macro_precision, m->macro_recall, m->macro_f1), "weighted_avg",
                  avg_json(m->weighted_precision, m->weighted_recall, m->weighted_f1), "confusion", confusion,
                  "roc", "per_class", curves, "micro", roc_json(&m->micro), "macro", macro);
    if (o) json_object_set_new(json_object_get(o, "macro_avg"), "n_classes", json_integer(m->n_avg_classes));
    return o; /* json_pack's "o" stole the references, on failure too */
fail:
    json_decref(per_class);
    json_decref(confusion);
    json_decref(curves);
    return NULL;
}
